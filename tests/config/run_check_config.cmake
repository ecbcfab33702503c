# Runs EXE on FILE and checks its exit code (EXPECT_CODE) and that its output contains
# EXPECT_OUTPUT. CTest alone can only tell zero from non-zero.
execute_process(COMMAND ${EXE} ${FILE} RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
message(STATUS "exit ${code}\n${out}${err}")
if(NOT code STREQUAL EXPECT_CODE)
  message(FATAL_ERROR "expected exit code ${EXPECT_CODE}, got ${code}")
endif()
string(FIND "${out}" "${EXPECT_OUTPUT}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "output does not contain: ${EXPECT_OUTPUT}")
endif()
