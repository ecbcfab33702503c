# CTest registration of the libFuzzer targets (included by the top-level CMakeLists.txt).
#   fuzz.build          configures and builds fuzz/ with clang into ${CMAKE_BINARY_DIR}/fuzz-build
#                       (fixture fuzz_build); fails with a clear message when clang or the
#                       libFuzzer runtime is missing (scripts/setup.sh installs them).
#   fuzz.<target>       runs the target for a bounded time on its seed corpus (every seed,
#                       including the regress-* crash inputs, is replayed first). New inputs go to
#                       fuzz-build/corpus/<target>, crashes to fuzz-build/artifacts/.
# Run only these: ctest -L fuzz. Leave them out: ctest -LE fuzz.
set(BACKSTOP_FUZZ_TARGETS price json_text json_splitter ts_wire ibkr_wire config)
set(BACKSTOP_FUZZ_BUILD_DIR ${CMAKE_BINARY_DIR}/fuzz-build)
set(BACKSTOP_FUZZ_SECONDS 15 CACHE STRING "Seconds each fuzz target runs under CTest")

add_test(NAME fuzz.build
         COMMAND ${CMAKE_COMMAND} -DSOURCE_DIR=${CMAKE_CURRENT_SOURCE_DIR}/fuzz
                 -DBINARY_DIR=${BACKSTOP_FUZZ_BUILD_DIR}
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/build_fuzz.cmake)
set_tests_properties(fuzz.build PROPERTIES FIXTURES_SETUP fuzz_build LABELS fuzz TIMEOUT 1200)

foreach(t ${BACKSTOP_FUZZ_TARGETS})
  add_test(NAME fuzz.${t}
           COMMAND ${CMAKE_COMMAND} -DFUZZER=${BACKSTOP_FUZZ_BUILD_DIR}/fuzz_${t}
                   -DWORK_CORPUS=${BACKSTOP_FUZZ_BUILD_DIR}/corpus/${t}
                   -DSEED_CORPUS=${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/${t}
                   -DARTIFACTS=${BACKSTOP_FUZZ_BUILD_DIR}/artifacts
                   -DNAME=${t} -DSECONDS=${BACKSTOP_FUZZ_SECONDS}
                   -P ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/run_fuzz.cmake)
  set_tests_properties(fuzz.${t} PROPERTIES FIXTURES_REQUIRED fuzz_build LABELS fuzz
                       TIMEOUT 180 RESOURCE_LOCK fuzz_cpu)
endforeach()
