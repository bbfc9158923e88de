# Reads the extension's CMake lists the way a Slicer build would, without a Slicer SDK.
#
#   cmake -DEXTENSION_SOURCE_DIR=<repository> -DRECORD_FILE=<out.txt> \
#         -P Testing/extension/configure_with_slicer_stubs.cmake
#
# The commands that only a configure step (or Slicer's SDK) provides are defined here as stubs
# that check their arguments and record them in RECORD_FILE, one "key=value" line each (lists
# joined with ";"). Unknown commands, wrong keywords and syntax errors stop cmake with an error.
#
# Optional, to follow the Slicer API manifest (defaults are Slicer's own keywords):
#   -DBUILD_SCRIPTED_MODULE_OPTIONS=... -DBUILD_SCRIPTED_MODULE_ONE_VALUE=...
#   -DBUILD_SCRIPTED_MODULE_MULTI_VALUE=... -DPYTHON_UNITTEST_ONE_VALUE=...
#   -DPYTHON_UNITTEST_MULTI_VALUE=... -DRECORDED_EXTENSION_VARIABLES=...

cmake_minimum_required(VERSION 3.16)

foreach(required EXTENSION_SOURCE_DIR RECORD_FILE)
  if(NOT DEFINED ${required})
    message(FATAL_ERROR "define ${required} with -D${required}=... before -P")
  endif()
endforeach()

if(NOT DEFINED BUILD_SCRIPTED_MODULE_OPTIONS)
  set(BUILD_SCRIPTED_MODULE_OPTIONS VERBOSE WITH_GENERIC_TESTS WITH_SUBDIR)
endif()
if(NOT DEFINED BUILD_SCRIPTED_MODULE_ONE_VALUE)
  set(BUILD_SCRIPTED_MODULE_ONE_VALUE NAME)
endif()
if(NOT DEFINED BUILD_SCRIPTED_MODULE_MULTI_VALUE)
  set(BUILD_SCRIPTED_MODULE_MULTI_VALUE SCRIPTS RESOURCES)
endif()
if(NOT DEFINED PYTHON_UNITTEST_ONE_VALUE)
  set(PYTHON_UNITTEST_ONE_VALUE SCRIPT TESTNAME_PREFIX)
endif()
if(NOT DEFINED PYTHON_UNITTEST_MULTI_VALUE)
  set(PYTHON_UNITTEST_MULTI_VALUE SLICER_ARGS)
endif()
if(NOT DEFINED RECORDED_EXTENSION_VARIABLES)
  set(RECORDED_EXTENSION_VARIABLES
    EXTENSION_HOMEPAGE EXTENSION_CATEGORY EXTENSION_CONTRIBUTORS EXTENSION_DESCRIPTION
    EXTENSION_ICONURL EXTENSION_SCREENSHOTURLS EXTENSION_DEPENDS EXTENSION_STATUS)
endif()

get_filename_component(EXTENSION_SOURCE_DIR "${EXTENSION_SOURCE_DIR}" ABSOLUTE)
get_filename_component(RECORD_FILE "${RECORD_FILE}" ABSOLUTE)
get_filename_component(_stub_dir "${RECORD_FILE}" DIRECTORY)
file(WRITE "${RECORD_FILE}" "")

function(record key value)
  string(REPLACE "\n" " " value "${value}")
  file(APPEND "${RECORD_FILE}" "${key}=${value}\n")
endfunction()

# --- what a configure step provides -------------------------------------------------------
macro(project name)
  record(project "${name}")
  set(PROJECT_NAME "${name}")
  set(CMAKE_PROJECT_NAME "${name}")
  set(${name}_SOURCE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
endmacro()

function(add_subdirectory directory)
  if(NOT EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/${directory}/CMakeLists.txt")
    message(FATAL_ERROR "add_subdirectory(${directory}): no CMakeLists.txt in ${CMAKE_CURRENT_SOURCE_DIR}/${directory}")
  endif()
  record(add_subdirectory "${directory}")
  set(CMAKE_CURRENT_SOURCE_DIR "${CMAKE_CURRENT_SOURCE_DIR}/${directory}")
  include("${CMAKE_CURRENT_SOURCE_DIR}/CMakeLists.txt")
endfunction()

# --- what find_package(Slicer) provides ---------------------------------------------------
# The use file defines the Slicer macros, as Slicer's UseSlicer.cmake does: calling them before
# include(${Slicer_USE_FILE}) is an error here as it is in a real build.
file(WRITE "${_stub_dir}/UseSlicerStub.cmake" [=[
record(include Slicer_USE_FILE)

function(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MODULE "${BUILD_SCRIPTED_MODULE_OPTIONS}"
    "${BUILD_SCRIPTED_MODULE_ONE_VALUE}" "${BUILD_SCRIPTED_MODULE_MULTI_VALUE}" ${ARGN})
  if(MODULE_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "slicerMacroBuildScriptedModule: unknown arguments ${MODULE_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT MODULE_NAME)
    message(FATAL_ERROR "slicerMacroBuildScriptedModule: NAME is empty")
  endif()
  file(RELATIVE_PATH module_dir "${EXTENSION_SOURCE_DIR}" "${CMAKE_CURRENT_SOURCE_DIR}")
  record(module.name "${MODULE_NAME}")
  record(module.dir "${module_dir}")
  record(module.scripts "${MODULE_SCRIPTS}")
  record(module.resources "${MODULE_RESOURCES}")
  record(module.with_generic_tests "${MODULE_WITH_GENERIC_TESTS}")
endfunction()

function(slicer_add_python_unittest)
  cmake_parse_arguments(TEST "" "${PYTHON_UNITTEST_ONE_VALUE}" "${PYTHON_UNITTEST_MULTI_VALUE}" ${ARGN})
  if(TEST_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "slicer_add_python_unittest: unknown arguments ${TEST_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT TEST_SCRIPT)
    message(FATAL_ERROR "slicer_add_python_unittest: SCRIPT is empty")
  endif()
  file(RELATIVE_PATH module_dir "${EXTENSION_SOURCE_DIR}" "${CMAKE_CURRENT_SOURCE_DIR}")
  record(unittest.script "${module_dir}/${TEST_SCRIPT}")
endfunction()
]=])

file(WRITE "${_stub_dir}/SlicerExtensionGenerateConfigStub.cmake" [=[
record(include Slicer_EXTENSION_GENERATE_CONFIG)
]=])

# Like SlicerExtensionCPack.cmake, the CPack step reads the extension's EXTENSION_* variables.
file(WRITE "${_stub_dir}/SlicerExtensionCPackStub.cmake" [=[
record(include Slicer_EXTENSION_CPACK)
foreach(variable IN LISTS RECORDED_EXTENSION_VARIABLES)
  if(DEFINED ${variable})
    record(${variable} "${${variable}}")
  endif()
endforeach()
]=])

macro(find_package package)
  record(find_package "${package}")
  if("${package}" STREQUAL "Slicer")
    set(Slicer_FOUND TRUE)
    set(Slicer_USE_FILE "${_stub_dir}/UseSlicerStub.cmake")
    set(Slicer_EXTENSION_GENERATE_CONFIG "${_stub_dir}/SlicerExtensionGenerateConfigStub.cmake")
    set(Slicer_EXTENSION_CPACK "${_stub_dir}/SlicerExtensionCPackStub.cmake")
  else()
    message(FATAL_ERROR "find_package(${package}): only Slicer is available to this check")
  endif()
endmacro()

# --- configure the extension --------------------------------------------------------------
set(BUILD_TESTING ON)
set(CMAKE_SOURCE_DIR "${EXTENSION_SOURCE_DIR}")
set(CMAKE_CURRENT_SOURCE_DIR "${EXTENSION_SOURCE_DIR}")
include("${EXTENSION_SOURCE_DIR}/CMakeLists.txt")
record(done TRUE)
