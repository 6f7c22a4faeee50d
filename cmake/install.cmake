# `cmake --install` puts headers, shared libraries, the CLI and a CMake
# package in the prefix, so that a project outside the tree can write
#   find_package(subquad REQUIRED)
#   target_link_libraries(my_target PRIVATE subquad::subquad)
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(SUBQUAD_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/subquad)

# Everything a user links, under one name.
add_library(subquad_all INTERFACE)
set(SUBQUAD_EXPORTED_LIBS subquad_core subquad_ops subquad_runtime subquad_passes)
if(TARGET subquad_serialize)
  list(APPEND SUBQUAD_EXPORTED_LIBS subquad_serialize)
endif()
target_link_libraries(subquad_all INTERFACE ${SUBQUAD_EXPORTED_LIBS})
set_target_properties(subquad_all PROPERTIES EXPORT_NAME subquad)
add_library(subquad::subquad ALIAS subquad_all)
foreach(lib ${SUBQUAD_EXPORTED_LIBS})
  string(REPLACE "subquad_" "" short ${lib})
  set_target_properties(${lib} PROPERTIES EXPORT_NAME ${short})
endforeach()

# Installed programs and libraries find subquad's libraries next to them.
set_target_properties(subquad ${SUBQUAD_EXPORTED_LIBS} PROPERTIES
  INSTALL_RPATH "$ORIGIN/../${CMAKE_INSTALL_LIBDIR}")

install(TARGETS ${SUBQUAD_EXPORTED_LIBS} subquad_all
  EXPORT subquadTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS subquad RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# Public headers keep their folders: #include "core/graph.h".
foreach(dir core core/testing ops ops/nn passes passes/pattern runtime serialize)
  file(GLOB headers ${PROJECT_SOURCE_DIR}/${dir}/*.h)
  install(FILES ${headers} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/subquad/${dir})
endforeach()
set(SUBQUAD_HAS_SERIALIZE FALSE)
if(TARGET subquad_serialize)
  set(SUBQUAD_HAS_SERIALIZE TRUE)
  # Generated at build time, so listed by the protos rather than globbed.
  foreach(proto graph checkpoint)
    install(FILES ${PROJECT_BINARY_DIR}/serialize/${proto}.pb.h
            DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/subquad/serialize OPTIONAL)
  endforeach()
endif()

install(EXPORT subquadTargets NAMESPACE subquad:: DESTINATION ${SUBQUAD_INSTALL_CMAKEDIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/subquadConfig.cmake.in
  ${PROJECT_BINARY_DIR}/subquadConfig.cmake
  INSTALL_DESTINATION ${SUBQUAD_INSTALL_CMAKEDIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/subquadConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/subquadConfig.cmake
              ${PROJECT_BINARY_DIR}/subquadConfigVersion.cmake
        DESTINATION ${SUBQUAD_INSTALL_CMAKEDIR})
