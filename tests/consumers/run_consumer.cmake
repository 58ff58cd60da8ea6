# Driver for crew's consumer checks; run by ctest as
#   cmake -DROUTE=<route> -DCREW_SOURCE_DIR=... -DCONSUMERS_DIR=... -DWORK_DIR=... \
#         -DGENERATOR=... -DMAKE_PROGRAM=... -DCXX_COMPILER=... -DBUILD_TYPE=... \
#         -DCREW_VERSION=... -P run_consumer.cmake
#
# Routes:
#   install           configure/build/install crew alone (tests, benchmarks, examples OFF) into
#                     <WORK_DIR>/prefix; check the CMake package and pkg-config files.
#   add_subdirectory  copy crew's library files into <WORK_DIR>/add_subdirectory/third_party/crew,
#                     consumer does add_subdirectory() of it.
#   fetchcontent      consumer does FetchContent with SOURCE_DIR = crew's source tree (no network).
#   find_package      consumer does find_package(crew CONFIG REQUIRED) from <WORK_DIR>/prefix
#                     (the `install` route must have run: ctest fixture crew_installed).
# Every route builds in a fresh directory and fails on the first failing step.

cmake_minimum_required(VERSION 3.25)

foreach(_var IN ITEMS ROUTE CREW_SOURCE_DIR CONSUMERS_DIR WORK_DIR GENERATOR CXX_COMPILER
                      BUILD_TYPE)
  if(NOT DEFINED ${_var} OR "${${_var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer.cmake: -D${_var}=... is required")
  endif()
endforeach()

set(_common_args -G "${GENERATOR}" "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
                 "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}")
if(DEFINED MAKE_PROGRAM AND NOT MAKE_PROGRAM STREQUAL "")
  list(APPEND _common_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()

# crew_step(<description> COMMAND <cmd...> [WORKING_DIRECTORY <dir>])
# Runs one step; on failure prints its output and stops the script with an error.
function(crew_step description)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "WORKING_DIRECTORY" "COMMAND")
  if(NOT arg_WORKING_DIRECTORY)
    set(arg_WORKING_DIRECTORY "${WORK_DIR}")
  endif()
  message(STATUS "[${ROUTE}] ${description}")
  execute_process(
    COMMAND ${arg_COMMAND}
    WORKING_DIRECTORY "${arg_WORKING_DIRECTORY}"
    RESULT_VARIABLE _result
    OUTPUT_VARIABLE _output
    ERROR_VARIABLE _output)
  if(NOT _result STREQUAL "0")
    string(REPLACE ";" " " _cmdline "${arg_COMMAND}")
    message(FATAL_ERROR
      "[${ROUTE}] ${description} FAILED (result: ${_result})\n"
      "command: ${_cmdline}\n"
      "output:\n${_output}")
  endif()
  set(CREW_STEP_OUTPUT "${_output}" PARENT_SCOPE)
endfunction()

# Configure, build and run the consumer project tests/consumers/<ROUTE>.
function(crew_build_and_run_consumer)
  set(_build "${WORK_DIR}/${ROUTE}/build")
  crew_step("configure consumer"
    COMMAND "${CMAKE_COMMAND}" -S "${CONSUMERS_DIR}/${ROUTE}" -B "${_build}" ${_common_args}
            ${ARGN})
  crew_step("build consumer"
    COMMAND "${CMAKE_COMMAND}" --build "${_build}" --config "${BUILD_TYPE}")
  set(_exe "${_build}/bin/consumer${CMAKE_EXECUTABLE_SUFFIX}")
  if(NOT EXISTS "${_exe}")
    message(FATAL_ERROR "[${ROUTE}] consumer executable not found at ${_exe}")
  endif()
  crew_step("run consumer" COMMAND "${_exe}")
  message(STATUS "[${ROUTE}] consumer output:\n${CREW_STEP_OUTPUT}")
  if(DEFINED CREW_VERSION AND NOT CREW_STEP_OUTPUT MATCHES "crew ${CREW_VERSION}")
    message(FATAL_ERROR "[${ROUTE}] consumer did not print 'crew ${CREW_VERSION}'")
  endif()
endfunction()

if(ROUTE STREQUAL "install")
  set(_dir "${WORK_DIR}/install")
  set(_prefix "${WORK_DIR}/prefix")
  file(REMOVE_RECURSE "${_dir}" "${_prefix}")
  file(MAKE_DIRECTORY "${_dir}")
  crew_step("configure crew"
    COMMAND "${CMAKE_COMMAND}" -S "${CREW_SOURCE_DIR}" -B "${_dir}/build" ${_common_args}
            "-DCMAKE_INSTALL_PREFIX=${_prefix}" -DCREW_BUILD_TESTS=OFF
            -DCREW_BUILD_BENCHMARKS=OFF -DCREW_BUILD_EXAMPLES=OFF -DCREW_INSTALL=ON)
  crew_step("build crew"
    COMMAND "${CMAKE_COMMAND}" --build "${_dir}/build" --config "${BUILD_TYPE}")
  crew_step("install crew"
    COMMAND "${CMAKE_COMMAND}" --install "${_dir}/build" --config "${BUILD_TYPE}")

  foreach(_f IN ITEMS include/crew/version.hpp share/cmake/crew/crewConfig.cmake
                      share/cmake/crew/crewConfigVersion.cmake share/cmake/crew/crewTargets.cmake
                      share/pkgconfig/crew.pc)
    if(NOT EXISTS "${_prefix}/${_f}")
      message(FATAL_ERROR "[install] ${_prefix}/${_f} was not installed")
    endif()
  endforeach()

  find_program(_pkg_config NAMES pkg-config pkgconf)
  if(_pkg_config)
    set(ENV{PKG_CONFIG_PATH} "${_prefix}/share/pkgconfig")
    crew_step("pkg-config --cflags crew" COMMAND "${_pkg_config}" --cflags crew)
    string(STRIP "${CREW_STEP_OUTPUT}" _cflags)
    message(STATUS "[install] pkg-config --cflags crew: ${_cflags}")
    if(NOT _cflags MATCHES "-I([^ ]+)")
      message(FATAL_ERROR "[install] pkg-config --cflags crew printed no -I flag: '${_cflags}'")
    endif()
    file(REAL_PATH "${CMAKE_MATCH_1}" _pc_include)
    file(REAL_PATH "${_prefix}/include" _want_include)
    if(NOT _pc_include STREQUAL _want_include)
      message(FATAL_ERROR
        "[install] pkg-config include dir ${_pc_include} is not ${_want_include}")
    endif()
    crew_step("pkg-config --modversion crew" COMMAND "${_pkg_config}" --modversion crew)
    string(STRIP "${CREW_STEP_OUTPUT}" _pc_version)
    if(DEFINED CREW_VERSION AND NOT _pc_version STREQUAL CREW_VERSION)
      message(FATAL_ERROR "[install] pkg-config version '${_pc_version}' != '${CREW_VERSION}'")
    endif()
  else()
    message(STATUS "[install] pkg-config not installed: pkg-config check skipped")
  endif()

elseif(ROUTE STREQUAL "add_subdirectory")
  set(_dir "${WORK_DIR}/add_subdirectory")
  file(REMOVE_RECURSE "${_dir}")
  set(_third_party "${_dir}/third_party/crew")
  file(MAKE_DIRECTORY "${_third_party}")
  # Only what a vendoring user copies: no tests, benchmarks, examples or build trees.
  file(COPY "${CREW_SOURCE_DIR}/include" "${CREW_SOURCE_DIR}/cmake"
            "${CREW_SOURCE_DIR}/CMakeLists.txt" DESTINATION "${_third_party}")
  if(EXISTS "${CREW_SOURCE_DIR}/LICENSE")
    file(COPY "${CREW_SOURCE_DIR}/LICENSE" DESTINATION "${_third_party}")
  endif()
  crew_build_and_run_consumer("-DCREW_THIRD_PARTY_DIR=${_third_party}")

elseif(ROUTE STREQUAL "fetchcontent")
  file(REMOVE_RECURSE "${WORK_DIR}/fetchcontent")
  crew_build_and_run_consumer("-DCREW_SOURCE_DIR=${CREW_SOURCE_DIR}")

elseif(ROUTE STREQUAL "find_package" OR ROUTE STREQUAL "find_package_redis")
  set(_prefix "${WORK_DIR}/prefix")
  if(NOT EXISTS "${_prefix}/share/cmake/crew/crewConfig.cmake")
    message(FATAL_ERROR "[${ROUTE}] no crew install in ${_prefix}: run crew.consumer.install")
  endif()
  file(REMOVE_RECURSE "${WORK_DIR}/${ROUTE}")
  crew_build_and_run_consumer("-DCMAKE_PREFIX_PATH=${_prefix}"
                              "-DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON")

else()
  message(FATAL_ERROR "run_consumer.cmake: unknown ROUTE '${ROUTE}'")
endif()

message(STATUS "[${ROUTE}] OK")
