// Venue::save_state / restore_state: the venue's record as JSON, prices as exact units.
#include "brokers/sim/venue_state.hpp"

#include "core/error.hpp"

namespace backstop {

using nlohmann::json;

json price_json(const std::optional<Price>& p) { return p ? json(p->units()) : json(nullptr); }

std::optional<Price> price_from(const json& j, const char* key) {
  const json& v = j.at(key);
  if (v.is_null()) return std::nullopt;
  return Price::from_units(v.get<std::int64_t>());
}

namespace {

std::optional<VenueStatus> venue_status_from_string(const std::string& s) {
  for (auto st : {VenueStatus::held, VenueStatus::working, VenueStatus::triggered, VenueStatus::filled,
                  VenueStatus::cancelled, VenueStatus::rejected})
    if (s == to_string(st)) return st;
  return std::nullopt;
}

template <typename T>
T known(std::optional<T> v, const char* what, const std::string& text) {
  if (!v) throw Error(std::string("unknown ") + what + " \"" + text + "\"");
  return *v;
}

}  // namespace

json venue_order_to_json(const VenueOrder& o) {
  return {{"id", o.id},
          {"client_order_id", o.client_order_id},
          {"account", o.account},
          {"symbol", o.symbol},
          {"side", to_string(o.side)},
          {"quantity", o.quantity},
          {"type", to_string(o.type)},
          {"limit_price", price_json(o.limit_price)},
          {"stop_price", price_json(o.stop_price)},
          {"tif", to_string(o.tif)},
          {"outside_rth", o.outside_rth},
          {"parent_id", o.parent_id},
          {"oco_group", o.oco_group},
          {"status", to_string(o.status)},
          {"filled_quantity", o.filled_quantity},
          {"average_fill_price", o.average_fill_price.units()},
          {"reason", o.reason},
          {"ghost", o.ghost},
          {"ghost_crossed_logged", o.ghost_crossed_logged},
          {"created_at", o.created_at},
          {"updated_at", o.updated_at},
          {"triggered_at", o.triggered_at}};
}

VenueOrder venue_order_from_json(const json& j) {
  VenueOrder o;
  o.id = j.at("id").get<std::string>();
  o.client_order_id = j.at("client_order_id").get<std::string>();
  o.account = j.at("account").get<std::string>();
  o.symbol = j.at("symbol").get<std::string>();
  const auto side = j.at("side").get<std::string>(), type = j.at("type").get<std::string>(),
             tif = j.at("tif").get<std::string>(), status = j.at("status").get<std::string>();
  o.side = known(side_from_string(side), "side", side);
  o.quantity = j.at("quantity").get<std::int64_t>();
  o.type = known(order_type_from_string(type), "order type", type);
  o.limit_price = price_from(j, "limit_price");
  o.stop_price = price_from(j, "stop_price");
  o.tif = known(tif_from_string(tif), "time in force", tif);
  o.outside_rth = j.at("outside_rth").get<bool>();
  o.parent_id = j.at("parent_id").get<std::string>();
  o.oco_group = j.at("oco_group").get<std::string>();
  o.status = known(venue_status_from_string(status), "venue status", status);
  o.filled_quantity = j.at("filled_quantity").get<std::int64_t>();
  o.average_fill_price = Price::from_units(j.at("average_fill_price").get<std::int64_t>());
  o.reason = j.at("reason").get<std::string>();
  o.ghost = j.at("ghost").get<bool>();
  o.ghost_crossed_logged = j.at("ghost_crossed_logged").get<bool>();
  o.created_at = j.at("created_at").get<Timestamp>();
  o.updated_at = j.at("updated_at").get<Timestamp>();
  o.triggered_at = j.at("triggered_at").get<Timestamp>();
  return o;
}

namespace {

json fill_json(const VenueFill& f) {
  return {{"execution_id", f.execution_id}, {"order_id", f.order_id}, {"quantity", f.quantity},
          {"price", f.price.units()}, {"at", f.at}};
}
json position_json(const std::string& symbol, const VenuePosition& p) {
  return {{"symbol", symbol}, {"quantity", p.quantity}, {"average_price", p.average_price.units()}};
}
json arrival_json(const VenueArrival& a) {
  return {{"at", a.at}, {"client_order_id", a.client_order_id}, {"order_id", a.order_id}, {"duplicate", a.duplicate}};
}
json quote_json(const std::string& symbol, const Quote& q) {
  return {{"symbol", symbol}, {"bid", price_json(q.bid)}, {"ask", price_json(q.ask)}, {"last", price_json(q.last)},
          {"bid_size", q.bid_size}, {"ask_size", q.ask_size}, {"last_size", q.last_size}, {"at", q.at},
          {"source", q.source}};
}

// The state's arrays, by key, in the order a document's dump writes its keys (sorted):
// visit(key, each), where each(emit) hands the array's elements to emit one document at a time.
// One walk, shared by the document (save_state) and the text (write_state_text).
template <typename Visit>
void visit_arrays(const std::deque<VenueOrder>& orders, const std::vector<VenueFill>& fills,
                  const std::map<std::string, VenuePosition>& positions, const std::vector<VenueArrival>& arrivals,
                  const std::map<std::string, Quote>& quotes, Visit visit) {
  visit("arrivals", [&](auto emit) { for (const auto& a : arrivals) emit(arrival_json(a)); });
  visit("fills", [&](auto emit) { for (const auto& f : fills) emit(fill_json(f)); });
  visit("last_quotes", [&](auto emit) {
    for (const auto& [symbol, q] : quotes) emit(quote_json(symbol, q));
  });
  visit("orders", [&](auto emit) { for (const auto& o : orders) emit(venue_order_to_json(o)); });
  visit("positions", [&](auto emit) {
    for (const auto& [symbol, p] : positions) emit(position_json(symbol, p));
  });
}

}  // namespace

nlohmann::json Venue::save_state() const {
  json out = json::object();
  visit_arrays(orders_, fills_, positions_, arrivals_, last_quotes_, [&](const char* key, auto each) {
    json array = json::array();
    each([&](json element) { array.push_back(std::move(element)); });
    out[key] = std::move(array);  // moved, not copied: the orders' array is most of the state
  });
  out["next_order_id"] = next_order_id_;
  out["next_execution_id"] = next_execution_id_;
  return out;
}

void Venue::write_state_text(std::string& out) const {
  // The text save_state().dump() is, written one record at a time: only one record's document
  // exists at once (a document of the whole state is ~1.7 KB per order: 17 MB at 10,000, twice
  // over while it was copied into its parent).
  out.clear();
  out += '{';
  bool first_key = true;
  const auto key = [&](const char* k) {
    if (!first_key) out += ',';
    first_key = false;
    out += '"';
    out += k;
    out += "\":";
  };
  const auto counters = [&] {
    key("next_execution_id");
    out += std::to_string(next_execution_id_);
    key("next_order_id");
    out += std::to_string(next_order_id_);
  };
  visit_arrays(orders_, fills_, positions_, arrivals_, last_quotes_, [&](const char* k, auto each) {
    if (std::string_view(k) == "orders") counters();  // "next_..." sort between "last_quotes" and "orders"
    key(k);
    out += '[';
    bool first = true;
    each([&](const json& element) {
      if (!first) out += ',';
      first = false;
      out += element.dump();
    });
    out += ']';
  });
  out += '}';
}

namespace {

// The records of a state, read one element at a time (from a document, or while a text is
// parsed), kept apart from the venue's until all of it has been read.
struct StateReader {
  std::deque<VenueOrder> orders;
  std::vector<VenueFill> fills;
  std::map<std::string, VenuePosition> positions;
  std::vector<VenueArrival> arrivals;
  std::map<std::string, Quote> quotes;
  std::uint64_t next_order_id = 0, next_execution_id = 0;

  static constexpr const char* kArrays[] = {"orders", "fills", "positions", "arrivals", "last_quotes"};

  // Forgets what an array of this key gave before (a key repeated in a text counts with its
  // last value, as in a document).
  void start(std::string_view key) {
    if (key == "orders") orders.clear();
    else if (key == "fills") fills.clear();
    else if (key == "positions") positions.clear();
    else if (key == "arrivals") arrivals.clear();
    else if (key == "last_quotes") quotes.clear();
  }
  void element(std::string_view key, const json& j) {
    if (key == "orders") {
      orders.push_back(venue_order_from_json(j));
    } else if (key == "fills") {
      fills.push_back({j.at("execution_id").get<std::string>(), j.at("order_id").get<std::string>(),
                       j.at("quantity").get<std::int64_t>(), Price::from_units(j.at("price").get<std::int64_t>()),
                       j.at("at").get<Timestamp>()});
    } else if (key == "positions") {
      const auto symbol = j.at("symbol").get<std::string>();
      positions[symbol] = {symbol, j.at("quantity").get<std::int64_t>(),
                           Price::from_units(j.at("average_price").get<std::int64_t>())};
    } else if (key == "arrivals") {
      arrivals.push_back({j.at("at").get<Timestamp>(), j.at("client_order_id").get<std::string>(),
                          j.at("order_id").get<std::string>(), j.at("duplicate").get<bool>()});
    } else if (key == "last_quotes") {
      Quote q;
      q.symbol = j.at("symbol").get<std::string>();
      q.bid = price_from(j, "bid");
      q.ask = price_from(j, "ask");
      q.last = price_from(j, "last");
      q.bid_size = j.at("bid_size").get<std::int64_t>();
      q.ask_size = j.at("ask_size").get<std::int64_t>();
      q.last_size = j.at("last_size").get<std::int64_t>();
      q.at = j.at("at").get<Timestamp>();
      q.source = j.at("source").get<std::string>();
      quotes[q.symbol] = std::move(q);
    }
  }
  // The counters, and that every array was there (an array whose elements were read while
  // parsing is left empty in `top`).
  void finish(const json& top, const char*& part) {
    for (const char* key : kArrays) {
      part = key;
      for (const auto& j : top.at(key)) element(key, j);
    }
    part = "counters";
    next_order_id = top.at("next_order_id").get<std::uint64_t>();
    next_execution_id = top.at("next_execution_id").get<std::uint64_t>();
  }
};

}  // namespace

namespace {

// Runs `read(reader, part)`, turning what it throws into an Error naming the part of the state
// being read (`part`, which `read` moves along), or saying the text is not JSON.
template <typename Read>
StateReader read_state(Read read) {
  StateReader r;
  const char* part = "orders";
  try {
    read(r, part);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(std::string("not JSON: ") + e.what());
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("venue state: ") + part + ": " + e.what());
  } catch (const Error& e) {
    throw Error(std::string("venue state: ") + part + ": " + e.what());
  }
  return r;
}

}  // namespace

void Venue::restore_state(const nlohmann::json& state) {
  // Read whole before anything is replaced: a bad file leaves the venue as it was.
  StateReader r = read_state([&](StateReader& reader, const char*& part) { reader.finish(state, part); });
  install(std::move(r.orders), std::move(r.fills), std::move(r.positions), std::move(r.arrivals),
          std::move(r.quotes), r.next_order_id, r.next_execution_id);
}

void Venue::restore_state_text(std::string_view text) {
  // Each element of the top-level arrays is read into its record as soon as it is parsed and
  // dropped from the document (nlohmann's parse callback), so the whole state never exists as a
  // document: its peak memory was ~6 times the file's size. Read whole before anything is
  // replaced, as restore_state.
  StateReader r = read_state([&](StateReader& reader, const char*& part) {
    std::string array_key;  // the top-level array being parsed, "" outside one
    json top = json::parse(text, [&](int depth, json::parse_event_t event, json& parsed) {
      using E = json::parse_event_t;
      if (depth == 1 && event == E::key) {
        const auto& k = parsed.get_ref<const std::string&>();
        array_key.clear();
        for (const char* a : StateReader::kArrays)
          if (k == a) array_key = k;
        if (!array_key.empty()) reader.start(array_key);
        return true;
      }
      if (depth == 1 && event == E::array_end) array_key.clear();
      // An element of a top-level array, complete: a record now, nothing in the document.
      const bool element_done = event == E::value || event == E::object_end || event == E::array_end;
      if (depth == 2 && element_done && !array_key.empty()) {
        for (const char* a : StateReader::kArrays)
          if (array_key == a) part = a;
        reader.element(array_key, parsed);
        return false;
      }
      return true;
    });
    if (!top.is_object()) throw Error("not an object");
    reader.finish(top, part);
  });
  install(std::move(r.orders), std::move(r.fills), std::move(r.positions), std::move(r.arrivals),
          std::move(r.quotes), r.next_order_id, r.next_execution_id);
}

void Venue::install(std::deque<VenueOrder> orders, std::vector<VenueFill> fills,
                    std::map<std::string, VenuePosition> positions, std::vector<VenueArrival> arrivals,
                    std::map<std::string, Quote> quotes, std::uint64_t next_order_id,
                    std::uint64_t next_execution_id) {
  orders_ = std::move(orders);
  fills_ = std::move(fills);
  positions_ = std::move(positions);
  arrivals_ = std::move(arrivals);
  last_quotes_ = std::move(quotes);
  next_order_id_ = next_order_id;
  next_execution_id_ = next_execution_id;
  by_id_.clear();
  by_client_id_.clear();
  for (std::size_t i = 0; i < orders_.size(); ++i) {
    by_id_[orders_[i].id] = i;
    if (!orders_[i].client_order_id.empty()) by_client_id_[orders_[i].client_order_id] = i;
  }
}

}  // namespace backstop
