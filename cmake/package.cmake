# The systemd unit and the Debian package (cpack -G DEB from the build
# directory, or cpack --config BUILD/CPackConfig.cmake).
#
# The unit (packaging/zchat-broker.service) is always installed, under
# PREFIX/lib/systemd/system, with its ExecStart rewritten at install time to
# PREFIX/bin/zchat-broker; in the package PREFIX is /usr, so it lands in
# /usr/lib/systemd/system (where systemd looks for packaged units) and runs
# /usr/bin/zchat-broker. A prefix systemd does not read (~/.local,
# /usr/local) just holds a copy to link or copy by hand.
set(ZCHAT_UNIT_SOURCE ${PROJECT_SOURCE_DIR}/packaging/zchat-broker.service)
install(CODE "
  file(READ \"${ZCHAT_UNIT_SOURCE}\" unit)
  string(REPLACE \"/usr/bin/zchat-broker\" \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}/zchat-broker\" unit \"\${unit}\")
  set(dest \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/lib/systemd/system\")
  message(STATUS \"Installing: \${dest}/zchat-broker.service\")
  file(MAKE_DIRECTORY \"\${dest}\")
  file(WRITE \"\${dest}/zchat-broker.service\" \"\${unit}\")
  list(APPEND CMAKE_INSTALL_MANIFEST_FILES \"\${dest}/zchat-broker.service\")
")

set(CPACK_PACKAGE_NAME zchat)
set(CPACK_PACKAGE_VENDOR "zchat")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
  "ZeroMQ chat broker (zchat-broker) and terminal client (zchat)")
set(CPACK_PACKAGE_DESCRIPTION
  "zchat-broker is a small chat server speaking a MessagePack protocol over
ZeroMQ, storing accounts and messages in SQLite; it ships with a systemd unit
(zchat-broker.service) that binds tcp://127.0.0.1:5555 and keeps its database
in /var/lib/zchat. zchat is the terminal client. The static client library,
its headers, a CMake package and a pkg-config file are included.")
set(CPACK_RESOURCE_FILE_LICENSE ${PROJECT_SOURCE_DIR}/LICENSE)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_GENERATOR DEB)
set(CPACK_SOURCE_GENERATOR "")
set(CPACK_STRIP_FILES ON)  # the package without the RelWithDebInfo debug info

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # zchat_0.1.0_amd64.deb
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "zchat maintainers <zchat@example.org>")
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_LICENSE MIT)  # not a control field; see copyright
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/zchat/zchat")
# Runtime dependencies: computed by dpkg-shlibdeps (Debian's dpkg-dev) when
# it is there, else the Debian 12 names listed by hand.
find_program(ZCHAT_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(ZCHAT_DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
else()
  set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "libc6, libstdc++6, libgcc-s1, libzmq5, libsodium23, libsqlite3-0, libedit2, libmicrohttpd12")
endif()
# The license as the Debian copyright file.
configure_file(${PROJECT_SOURCE_DIR}/LICENSE
  ${PROJECT_BINARY_DIR}/packaging/copyright COPYONLY)
install(FILES ${PROJECT_BINARY_DIR}/packaging/copyright
        DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/zchat)

include(CPack)
