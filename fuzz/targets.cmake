# The fuzz targets: each fuzz/<name>.cpp (but the replay driver and helpers) defines
# LLVMFuzzerTestOneInput, and its seed corpus is fuzz/corpus/<name>/. Included by
# fuzz/CMakeLists.txt (libFuzzer binaries, MPROC_FUZZ=ON) and tests/CMakeLists.txt (corpus
# replay in the test suite).
file(GLOB MPROC_FUZZ_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/*.cpp)
set(MPROC_FUZZ_TARGETS "")
foreach(source ${MPROC_FUZZ_SOURCES})
  get_filename_component(name ${source} NAME_WE)
  if(NOT name STREQUAL "replay_main")
    list(APPEND MPROC_FUZZ_TARGETS ${name})
  endif()
endforeach()
set(MPROC_FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR})
