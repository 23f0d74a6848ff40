# Installs the mproc build tree into a private prefix, then builds and runs the consumer
# project twice: once through find_package(mproc) on the installed tree, once through
# add_subdirectory on the source tree.
file(REMOVE_RECURSE ${BUILD_DIR})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${MPROC_BUILD_DIR} --prefix ${BUILD_DIR}/prefix
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "install failed")
endif()
foreach(mode find_package add_subdirectory)
  execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/package -B ${BUILD_DIR}/${mode}
                          -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_PREFIX_PATH=${BUILD_DIR}/prefix
                          -DMPROC_CONSUME=${mode} -DMPROC_SOURCE_DIR=${SOURCE_DIR}
                  RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "${mode}: configure failed")
  endif()
  execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR}/${mode} RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "${mode}: build failed")
  endif()
  execute_process(COMMAND ${BUILD_DIR}/${mode}/consumer RESULT_VARIABLE rc OUTPUT_VARIABLE out)
  if(rc OR NOT out MATCHES "consumer ok")
    message(FATAL_ERROR "${mode}: consumer failed (${rc}): ${out}")
  endif()
  message(STATUS "${mode}: ${out}")
endforeach()
