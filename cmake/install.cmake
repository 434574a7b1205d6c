# What `cmake --install build --prefix P` puts under P:
#   bin/       zchat-broker, zchat, zchat-bench, zchat-core-bench
#   lib/       libzchat-client.a, libzchat-messages.a (CMAKE_INSTALL_LIBDIR)
#   include/zchat/client/client.h, include/zchat/messages/*.h
#   lib/cmake/zchat/  find_package(zchat CONFIG): imported target zchat::client
#   lib/pkgconfig/zchat-client.pc
# Consumers get both include/ and include/zchat on their include path, so
# <zchat/client/client.h> works and the headers' own "messages/..." includes
# resolve. The test support library (tests/support) is not installed.
include(CMakePackageConfigHelpers)

install(TARGETS zchat-broker zchat zchat-core-bench
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
if(TARGET zchat-bench)  # not in builds with ZCHAT_BUILD_BENCH=OFF
  install(TARGETS zchat-bench RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
install(TARGETS client messages EXPORT zchatTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES client/client.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/zchat/client)
install(FILES messages/codec.h messages/error_code.h messages/messages.h
              messages/status.h messages/utf8.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/zchat/messages)

set(ZCHAT_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/zchat)
install(EXPORT zchatTargets NAMESPACE zchat:: DESTINATION ${ZCHAT_CMAKE_DIR})
configure_package_config_file(cmake/zchatConfig.cmake.in
  ${PROJECT_BINARY_DIR}/zchatConfig.cmake
  INSTALL_DESTINATION ${ZCHAT_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/zchatConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/zchatConfig.cmake
              ${PROJECT_BINARY_DIR}/zchatConfigVersion.cmake
        DESTINATION ${ZCHAT_CMAKE_DIR})

# The .pc file finds the prefix from its own place (${pcfiledir}), so it is
# right for whatever --prefix the install is given.
file(RELATIVE_PATH ZCHAT_PC_TO_PREFIX
  /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
string(REGEX REPLACE "/$" "" ZCHAT_PC_TO_PREFIX "${ZCHAT_PC_TO_PREFIX}")
set(ZCHAT_PC_EXTRA_LIBS "")
if(ZCHAT_SANITIZE)
  set(ZCHAT_PC_EXTRA_LIBS " -fsanitize=address,undefined")
endif()
configure_file(cmake/zchat-client.pc.in
  ${PROJECT_BINARY_DIR}/zchat-client.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/zchat-client.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
