# cmake -DSOURCE_DIR=<repo>/fuzz -DBINARY_DIR=<dir> -P build_fuzz.cmake
# Configures and builds the fuzz project with clang (CTest test fuzz.build).
find_program(BACKSTOP_CLANGXX NAMES clang++ clang++-14 clang++-15 clang++-16)
if(NOT BACKSTOP_CLANGXX)
  message(FATAL_ERROR "fuzz: clang++ not found. The fuzz targets need clang and the libFuzzer runtime: "
                      "run scripts/setup.sh (Debian 12: apt-get install clang libclang-rt-14-dev)")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${BINARY_DIR}
                        -DCMAKE_CXX_COMPILER=${BACKSTOP_CLANGXX} -DCMAKE_BUILD_TYPE=RelWithDebInfo
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "fuzz: configuring ${SOURCE_DIR} with ${BACKSTOP_CLANGXX} failed (see above)")
endif()
# Never more than two jobs: the machines this runs on are shared.
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BINARY_DIR} -j2 RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "fuzz: building the fuzz targets failed (see above)")
endif()
