#!/usr/bin/env python3
"""A strategy in Python trading through Backstop's local API (standard library only).

Run Backstop with the API enabled, then this script:

    backstop run --config config/examples/sim-api.json --for 2m &
    python3 api/examples/python_strategy.py --url http://127.0.0.1:8788 \
        --token-file backstop-api.token --strategy breakout --rounds 3

Each round it
  1. learns the market price (GET /api/v1/quotes: the last quote, else the last fill Backstop saw;
     with neither yet, a one-lot market order's fill price),
  2. sends a bracket: a market entry with a take-profit and a protective stop a few ticks away
     (POST /api/v1/brackets); Backstop lints the stop, reads it back at the broker (verification)
     and watches it for ghost stops,
  3. follows the event stream (GET /api/v1/events, Server-Sent Events) until the bracket ends or
     the round times out, printing what happens to its orders,
  4. cancels whatever of its bracket still works.

It orders through a configured strategy's route (--strategy): the API sends to that route's
brokers with the same pre-trade checks, failover and protection as the C++ strategies.
The token is read from the token file and sent only in the Authorization header.
"""
import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal


class Api:
    def __init__(self, url, token):
        self.url = url.rstrip("/")
        self.token = token

    def request(self, method, path, body=None, timeout=10):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def get(self, path):
        status, body = self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}: {body}")
        return body

    def events(self, after_id):
        """Yields (id, type, data) from the event stream, after event `after_id`."""
        req = urllib.request.Request(f"{self.url}/api/v1/events?last_event_id={after_id}")
        req.add_header("Authorization", "Bearer " + self.token)
        with urllib.request.urlopen(req, timeout=30) as stream:
            ev = {}
            for raw in stream:
                line = raw.decode().rstrip("\n")
                if not line:
                    if "event" in ev:
                        yield int(ev.get("id", 0)), ev["event"], json.loads(ev.get("data", "null"))
                    ev = {}
                elif not line.startswith(":"):
                    key, _, value = line.partition(": ")
                    ev[key] = value


def market_price(api, symbol, strategy):
    quote = api.get("/api/v1/quotes")["quotes"].get(symbol, {})
    for key in ("last", "bid"):
        if quote.get(key):
            return Decimal(quote[key])
    if quote.get("last_fill"):
        return Decimal(quote["last_fill"]["price"])
    # No price yet: a one-lot market order tells us, and is closed again right away.
    print("no quote or fill yet: probing the price with a 1-lot market order")
    status, r = api.request("POST", "/api/v1/orders",
                            {"strategy": strategy, "order": {"symbol": symbol, "side": "buy", "quantity": 1}})
    if status not in (200, 202):
        raise RuntimeError(f"probe order refused: HTTP {status}: {r}")
    coid = r["client_order_id"]
    for _ in range(100):
        order = api.get(f"/api/v1/orders/{coid}")
        if order["state"] == "filled":
            api.request("POST", "/api/v1/orders",
                        {"strategy": strategy, "order": {"symbol": symbol, "side": "sell", "quantity": 1}})
            return Decimal(order["average_fill_price"])
        if order["state"] in ("rejected", "failed", "cancelled"):
            raise RuntimeError(f"probe order {coid} {order['state']}: {order['last_message']}")
        time.sleep(0.1)
    raise RuntimeError("probe order did not fill")


def one_round(api, args, n):
    tick = Decimal(args.tick)
    price = market_price(api, args.symbol, args.strategy)
    side = "buy" if n % 2 == 0 else "sell"
    exit_side = "sell" if side == "buy" else "buy"
    sign = 1 if side == "buy" else -1
    target = price + sign * args.target_ticks * tick
    stop = price - sign * args.stop_ticks * tick
    # The stream is read from the start of the server's buffer (last_event_id=0) so that nothing
    # between this POST and the stream's connection is missed; events are filtered by order id.
    start_id = 0
    status, r = api.request("POST", "/api/v1/brackets", {
        "strategy": args.strategy,
        "entry": {"symbol": args.symbol, "side": side, "quantity": args.quantity},
        "take_profit": {"symbol": args.symbol, "side": exit_side, "quantity": args.quantity, "type": "limit",
                        "limit_price": str(target)},
        "protective_stop": {"symbol": args.symbol, "side": exit_side, "quantity": args.quantity, "type": "stop",
                            "stop_price": str(stop)},
    })
    if status not in (200, 202):
        print(f"round {n}: bracket refused: HTTP {status}: {r['error'] if isinstance(r, dict) else r}")
        return
    ids = [o["client_order_id"] for o in r["orders"]]
    print(f"round {n}: {side} {args.quantity} {args.symbol} near {price}, target {target}, stop {stop}: "
          f"orders {', '.join(ids)} ({r['result']['outcome'] if r['result'] else 'answer pending'})")

    deadline = time.time() + args.round_seconds
    done = set()
    try:
        for ev_id, kind, data in api.events(start_id):
            if kind in ("order", "fill", "stop", "ghost_stop") and data.get("client_order_id") in ids:
                if kind == "order":
                    print(f"  [{ev_id}] {data['client_order_id']} -> {data['state']}")
                    if data["state"] in ("filled", "cancelled", "rejected", "failed"):
                        done.add(data["client_order_id"])
                elif kind == "fill":
                    print(f"  [{ev_id}] fill {data['client_order_id']} {data['quantity']} @ {data['price']}")
                elif kind == "stop":
                    print(f"  [{ev_id}] stop {data['client_order_id']} verification {data['verification']}")
                else:
                    print(f"  [{ev_id}] GHOST STOP {data['client_order_id']}: {data['action']}")
                # Over when the entry ended without filling, or both exits ended.
                entry_dead = ids[0] in done and api.get(f"/api/v1/orders/{ids[0]}")["state"] != "filled"
                if entry_dead or (ids[1] in done and ids[2] in done):
                    break
            if time.time() > deadline:
                break
    except (TimeoutError, OSError):
        pass  # a quiet market: the round ends on its deadline
    for coid in ids:
        order = api.get(f"/api/v1/orders/{coid}")
        if order["working"]:
            status, c = api.request("POST", f"/api/v1/orders/{coid}/cancel", {})
            print(f"  cancel {coid}: HTTP {status} {c.get('result') or c.get('error')}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8788")
    p.add_argument("--token-file", default="backstop-api.token")
    p.add_argument("--strategy", default="breakout", help="a configured strategy whose route to trade on")
    p.add_argument("--symbol", default="AAPL")
    p.add_argument("--tick", default="0.01")
    p.add_argument("--quantity", type=int, default=5)
    p.add_argument("--stop-ticks", type=int, default=15)
    p.add_argument("--target-ticks", type=int, default=15)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--round-seconds", type=float, default=8)
    args = p.parse_args()
    with open(args.token_file) as f:
        token = f.read().strip()
    api = Api(args.url, token)
    brokers = api.get("/api/v1/brokers")["brokers"]
    print("brokers: " + ", ".join(f"{b['name']} {b['state']} (circuit {b['circuit']})" for b in brokers))
    for n in range(args.rounds):
        one_round(api, args, n)
    positions = api.get("/api/v1/positions")["brokers"]
    for broker, p in positions.items():
        for pos in p["positions"]:
            print(f"position at {broker}: {pos['symbol']} {pos['quantity']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
