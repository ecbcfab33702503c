# cmake -DFUZZER=... -DWORK_CORPUS=... -DSEED_CORPUS=... -DARTIFACTS=... -DNAME=... -DSECONDS=... -P run_fuzz.cmake
# Runs one libFuzzer target for a bounded time (CTest test fuzz.<name>). The seed corpus is
# read-only input; what the run discovers goes to WORK_CORPUS.
if(NOT EXISTS ${FUZZER})
  message(FATAL_ERROR "fuzz: ${FUZZER} was not built (did fuzz.build fail?)")
endif()
file(MAKE_DIRECTORY ${WORK_CORPUS} ${ARTIFACTS})
# A dictionary of the target's keys and spellings, when there is one (fuzz/<name>.dict).
get_filename_component(fuzz_dir ${SEED_CORPUS} DIRECTORY)
get_filename_component(fuzz_dir ${fuzz_dir} DIRECTORY)
set(dict)
if(EXISTS ${fuzz_dir}/${NAME}.dict)
  set(dict -dict=${fuzz_dir}/${NAME}.dict)
endif()
execute_process(COMMAND ${FUZZER} ${WORK_CORPUS} ${SEED_CORPUS} ${dict}
                        -max_total_time=${SECONDS} -runs=2000000 -timeout=10 -rss_limit_mb=2048
                        -max_len=65536 -print_final_stats=1 -artifact_prefix=${ARTIFACTS}/${NAME}-
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(REGEX MATCH "stat::number_of_executed_units: *[0-9]+" execs "${err}")
string(REGEX MATCH "stat::average_exec_per_sec: *[0-9]+" rate "${err}")
if(NOT rc EQUAL 0)
  string(LENGTH "${err}" len)
  if(len GREATER 20000)
    math(EXPR from "${len} - 20000")
    string(SUBSTRING "${err}" ${from} 20000 err)
  endif()
  message("${err}")
  message(FATAL_ERROR "fuzz.${NAME}: the fuzzer failed (exit ${rc}); the input is in ${ARTIFACTS}/${NAME}-*. "
                      "Replay: ${FUZZER} <that file>")
endif()
message("fuzz.${NAME}: ok, ${execs}, ${rate} ${dict}")
