# Runs EXE on FILE and checks its exit code (EXPECT_CODE) and that its output contains
# every line of EXPECT_OUTPUT. CTest alone can only tell zero from non-zero.
execute_process(COMMAND ${EXE} ${FILE} RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
message(STATUS "exit ${code}\n${out}${err}")
if(NOT code STREQUAL EXPECT_CODE)
  message(FATAL_ERROR "expected exit code ${EXPECT_CODE}, got ${code}")
endif()
# EXPECT_OUTPUT may list several expected lines separated by "|": every one must appear.
string(REPLACE "|" ";" expected "${EXPECT_OUTPUT}")
foreach(line IN LISTS expected)
  string(FIND "${out}" "${line}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "output does not contain: ${line}")
  endif()
endforeach()
