// backstop-emulate-tradestation: the same as `backstop emulate tradestation`.
#include "emulators/tradestation/tradestation_emulator.hpp"

int main(int argc, char** argv) {
  return backstop::tradestation_emulator::run_tradestation_emulator(argc, argv);
}
