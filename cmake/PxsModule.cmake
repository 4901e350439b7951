# Helpers shared by every module's CMakeLists.txt.

# pxs_module(NAME SOURCES ... [PUBLIC_LIBS ...] [PRIVATE_LIBS ...])
# Builds library pxs_NAME (alias pxs::NAME) from NAME/src, with NAME/include public.
function(pxs_module name)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC_LIBS;PRIVATE_LIBS" ${ARGN})
  add_library(pxs_${name} STATIC ${ARG_SOURCES})
  add_library(pxs::${name} ALIAS pxs_${name})
  target_include_directories(pxs_${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
                                         PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(pxs_${name} PUBLIC ${ARG_PUBLIC_LIBS} PRIVATE ${ARG_PRIVATE_LIBS})
  pxs_warnings(pxs_${name})
endfunction()

function(pxs_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
endfunction()

# pxs_test(NAME SOURCES ... LIBS ...): a GoogleTest executable registered with ctest.
# Tests get PXS_SOURCE_DIR (the repository root) and PXS_BINARY_DIR to find fixtures,
# ../shared/data and the built binaries.
function(pxs_test name)
  if(NOT PXS_BUILD_TESTS)
    return()
  endif()
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gtest_main)
  target_compile_definitions(${name} PRIVATE PXS_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
                                             PXS_BINARY_DIR="${PROJECT_BINARY_DIR}")
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests)
  pxs_warnings(${name})
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES LABELS "${ARG_LABELS}")
endfunction()
