# cmake -DREADME=<README.md> -DOUT_DIR=<dir> [-DSTAMP=<file>] -P extract_snippets.cmake
# Writes README's n-th ```cpp block to <dir>/readme_snippet_<n>.cpp, behind a #line directive so that the
# compiler's messages name README.md and its line. A file whose text is unchanged is not rewritten, so an edit
# to one block (or to prose below it) rebuilds only what it changed. Fails as snippets.cmake says.
cmake_minimum_required(VERSION 3.20)
include(${CMAKE_CURRENT_LIST_DIR}/snippets.cmake)

if(NOT DEFINED README OR NOT DEFINED OUT_DIR)
  message(FATAL_ERROR "usage: cmake -DREADME=<README.md> -DOUT_DIR=<dir> [-DSTAMP=<file>] -P extract_snippets.cmake")
endif()
salt_readme_snippets("${README}" snippet)
file(MAKE_DIRECTORY "${OUT_DIR}")
foreach(n RANGE 1 ${snippet_COUNT})
  if(n EQUAL 0)  # RANGE 1 0 counts down: no block, nothing to write
    break()
  endif()
  set(text "#line ${snippet_${n}_LINE} \"${README}\"\n${snippet_${n}}")
  set(path "${OUT_DIR}/readme_snippet_${n}.cpp")
  set(old "")
  if(EXISTS "${path}")
    file(READ "${path}" old)
  endif()
  if(NOT old STREQUAL text)
    file(WRITE "${path}" "${text}")
  endif()
endforeach()
if(DEFINED STAMP)
  file(TOUCH "${STAMP}")
endif()
message(STATUS "README snippets: ${snippet_COUNT} ```cpp blocks in ${README}")
