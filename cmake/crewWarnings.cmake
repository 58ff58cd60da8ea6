# Warning policy for crew's own tests, benchmarks and examples. Never applied to the crew library
# target: users who link crew::crew keep their own warning flags.
#
#   crew_add_warnings(<target>)
#
# CREW_WARNINGS_AS_ERRORS (default OFF; the `dev` preset turns it ON) adds -Werror.

option(CREW_WARNINGS_AS_ERRORS "Treat warnings as errors in crew's tests, benchmarks and examples"
       OFF)

function(crew_add_warnings target)
  if(MSVC)
    target_compile_options(${target} PRIVATE /W4 /permissive-)
    if(CREW_WARNINGS_AS_ERRORS)
      target_compile_options(${target} PRIVATE /WX)
    endif()
  else()
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wconversion -Wshadow)
    if(CREW_WARNINGS_AS_ERRORS)
      target_compile_options(${target} PRIVATE -Werror)
    endif()
  endif()
endfunction()
