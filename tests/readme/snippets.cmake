# Reads the fenced code blocks of a Markdown file (the README) for the snippet test. Every ```cpp block is a
# complete program; include() this and call salt_readme_snippets(<file> <prefix>), which sets
#   <prefix>_COUNT        the number of ```cpp blocks,
#   <prefix>_<n>          the text of block n (1-based, in file order),
#   <prefix>_<n>_LINE     the file's line number of block n's first line,
# or stops with FATAL_ERROR, naming the file and line, when C++ could escape the test:
#   - a C++ block fenced otherwise (```c++, ```cxx, ```cc, ```c, ```h, ```hpp, ...) or ```cpp with more words,
#   - an unlabelled block that holds C++ (#include, int main, salt::),
#   - a ```cpp block without `int main` (every block is compiled and run),
#   - an indented or ~~~ fence (only ``` at column 0 is read), or a block that is not closed.
# Lists are never used for the text: C++ is full of semicolons and brackets, which CMake lists split on.

# Stops with "<file>:<line>: <text>" on one line (a leading space keeps CMake from wrapping it), so an editor
# can jump to the line and the tests can match the text.
function(salt_readme_fail where)  # the text follows in pieces, read through ARGV<i> to keep their semicolons
  set(text "")
  math(EXPR last "${ARGC} - 1")
  foreach(i RANGE 1 ${last})
    string(APPEND text "${ARGV${i}}")
  endforeach()
  message(FATAL_ERROR " ${where}: ${text}")
endfunction()

function(salt_readme_snippets file prefix)
  file(READ "${file}" rest)
  set(count 0)
  set(line_no 0)
  set(inside "")  # "", "cpp", "other" or "untagged"
  set(body "")
  set(open_line 0)
  while(NOT rest STREQUAL "")
    string(FIND "${rest}" "\n" newline)
    if(newline EQUAL -1)
      set(line "${rest}")
      set(rest "")
    else()
      string(SUBSTRING "${rest}" 0 ${newline} line)
      math(EXPR next "${newline} + 1")
      string(SUBSTRING "${rest}" ${next} -1 rest)
    endif()
    math(EXPR line_no "${line_no} + 1")
    set(where "${file}:${line_no}")

    if(inside STREQUAL "")
      if(line MATCHES "^[ \t]+(```|~~~)")
        salt_readme_fail("${where}" "an indented code fence; the README snippet test reads only ``` fences at "
                            "column 0, so put the block there")
      elseif(line MATCHES "^~~~")
        salt_readme_fail("${where}" "a ~~~ code fence; the README snippet test reads only ``` fences")
      elseif(line MATCHES "^```+(.*)$")
        string(STRIP "${CMAKE_MATCH_1}" info)
        string(TOLOWER "${info}" info_lower)
        string(REGEX REPLACE "[ \t{].*$" "" language "${info_lower}")
        set(body "")
        math(EXPR open_line "${line_no} + 1")
        set(open_where "${where}")
        if(info STREQUAL "cpp")
          set(inside "cpp")
        elseif(language STREQUAL "cpp")
          salt_readme_fail("${where}" "```${info}: a C++ block is fenced as ```cpp and nothing else; every one is "
                              "compiled and run by the README snippet test (tests/readme), so no marker is read")
        elseif(language MATCHES "^(c\\+\\+|cxx|cc|c|h|hh|hpp|hxx|h\\+\\+|cplusplus|cpp.+)$")
          salt_readme_fail("${where}" "a C++ block fenced as ```${info}; fence it as ```cpp so that the README "
                              "snippet test (tests/readme) compiles and runs it")
        elseif(info STREQUAL "")
          set(inside "untagged")
        else()
          set(inside "other")
        endif()
      endif()
      continue()
    endif()

    if(line MATCHES "^```+[ \t]*$")  # the closing fence
      if(inside STREQUAL "cpp")
        if(NOT body MATCHES "int main\\(")
          salt_readme_fail("${open_where}" "this ```cpp block has no `int main(`; every README C++ block is a "
                              "complete program that the snippet test (tests/readme) compiles and runs")
        endif()
        math(EXPR count "${count} + 1")
        set(${prefix}_${count} "${body}" PARENT_SCOPE)
        set(${prefix}_${count}_LINE ${open_line} PARENT_SCOPE)
      elseif(inside STREQUAL "untagged" AND body MATCHES "(#include|int main\\(|salt::)")
        salt_readme_fail("${open_where}" "an unlabelled code block that holds C++ (#include, main or salt::); "
                            "fence it as ```cpp so that the README snippet test (tests/readme) compiles and runs it")
      endif()
      set(inside "")
      continue()
    endif()
    string(APPEND body "${line}\n")
  endwhile()

  if(NOT inside STREQUAL "")
    salt_readme_fail("${open_where}" "this code block is never closed (no ``` line after it)")
  endif()
  set(${prefix}_COUNT ${count} PARENT_SCOPE)
endfunction()
