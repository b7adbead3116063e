# Install rules: the library, every public header under include/peft/, and a relocatable
# CMake package so `find_package(peft CONFIG)` gives the peft::peft target.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
install(TARGETS peft EXPORT peftTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
foreach(dir core kernels layers adapters io)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${dir} DESTINATION include/peft
          FILES_MATCHING PATTERN "*.h" PATTERN "*.cuh")
endforeach()
install(FILES ${PROJECT_SOURCE_DIR}/peft.h DESTINATION include/peft)
install(EXPORT peftTargets NAMESPACE peft:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/peft)
set(PEFT_WITH_OPENMP ${OpenMP_CXX_FOUND})  # read by peftConfig.cmake.in
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/peftConfig.cmake.in
  ${PROJECT_BINARY_DIR}/peftConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/peft)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/peftConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/peftConfig.cmake ${PROJECT_BINARY_DIR}/peftConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/peft)
