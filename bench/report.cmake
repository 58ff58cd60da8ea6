# bench.report: after the benchmarks, turn their JSON into charts and a markdown summary.
# Included at the very end of bench/CMakeLists.txt, so every bench.* test is registered by now.
#
#   ctest test   bench.report (label benchmark), part of `cmake --workflow --preset bench`
#   runs         python3 bench/plot.py <build>/bench-results <build>/bench-docs
#   writes       <build>/bench-docs/*.png and benchmarks.md. Nothing in the source tree: copy
#                them to docs/ when updating the README (plot.py prints the cp command).
#
# Ordering: every test labelled `benchmark` here sets up the fixture crew_bench_results and
# bench.report requires it, so ctest starts the report only after all of them. Two
# consequences of using a fixture:
#   - if a benchmark test fails, ctest does not run bench.report ("Fixture dependency failed");
#   - selecting the report (`ctest -R report`) also runs every benchmark; to re-draw from the
#     results already there, add `-FS crew_bench_results`, or run plot.py by hand.

if(CREW_BENCHMARK_TESTS)
  find_package(Python3 COMPONENTS Interpreter)
  if(NOT Python3_Interpreter_FOUND)
    message(STATUS "crew bench: no Python 3 interpreter: bench.report (charts) skipped")
  else()
    # Mark the benchmark tests first, so bench.report does not become a setup test itself.
    get_property(_crew_bench_tests DIRECTORY PROPERTY TESTS)
    foreach(_crew_test IN LISTS _crew_bench_tests)
      get_test_property(${_crew_test} LABELS _crew_labels)
      if("benchmark" IN_LIST _crew_labels)
        set_property(TEST ${_crew_test} APPEND PROPERTY FIXTURES_SETUP crew_bench_results)
      endif()
    endforeach()

    set(CREW_BENCH_DOCS_DIR "${CMAKE_BINARY_DIR}/bench-docs")
    add_test(NAME bench.report
             COMMAND "${Python3_EXECUTABLE}" "${CMAKE_CURRENT_LIST_DIR}/plot.py"
                     "${CREW_BENCH_RESULTS_DIR}" "${CREW_BENCH_DOCS_DIR}")
    set_tests_properties(bench.report PROPERTIES
                         LABELS benchmark
                         FIXTURES_REQUIRED crew_bench_results
                         TIMEOUT 300)
    message(STATUS "crew bench: bench.report draws charts into ${CREW_BENCH_DOCS_DIR} "
                   "(copy them to docs/ to update the README)")
  endif()
endif()
