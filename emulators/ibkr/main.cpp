// backstop-emulate-ibkr: the emulator on its own, for development; `backstop emulate ibkr` runs
// the same code.
#include "emulators/ibkr/ibkr_gateway_emulator.hpp"

int main(int argc, char** argv) { return backstop::run_ibkr_emulator(argc, argv); }
