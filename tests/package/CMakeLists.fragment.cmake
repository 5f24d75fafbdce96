# Package tests: include() this from tests/CMakeLists.txt. They prove that a consumer project builds
# and runs against salt both through find_package (after an install) and through add_subdirectory.

set(salt_package_dir ${CMAKE_CURRENT_BINARY_DIR}/package)
set(salt_package_prefix ${CMAKE_CURRENT_BINARY_DIR}/package-prefix)
# Build the consumers with the same compiler and generator, and the same Eigen, as this build.
set(salt_package_options -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER} -DEigen3_DIR=${Eigen3_DIR})

if(SALT_INSTALL)
  add_test(NAME package_install
    COMMAND ${CMAKE_COMMAND} --install ${PROJECT_BINARY_DIR} --prefix ${salt_package_prefix})
  set_tests_properties(package_install PROPERTIES FIXTURES_SETUP salt_installed)

  add_test(NAME package_find_package
    COMMAND ${CMAKE_CTEST_COMMAND} --build-and-test
      ${CMAKE_CURRENT_LIST_DIR}/find_package ${salt_package_dir}/find_package
      --build-generator ${CMAKE_GENERATOR}
      --build-makeprogram ${CMAKE_MAKE_PROGRAM}
      --build-options ${salt_package_options} -DCMAKE_PREFIX_PATH=${salt_package_prefix}
      --test-command consumer)
  set_tests_properties(package_find_package PROPERTIES FIXTURES_REQUIRED salt_installed)
endif()

add_test(NAME package_add_subdirectory
  COMMAND ${CMAKE_CTEST_COMMAND} --build-and-test
    ${CMAKE_CURRENT_LIST_DIR}/add_subdirectory ${salt_package_dir}/add_subdirectory
    --build-generator ${CMAKE_GENERATOR}
    --build-makeprogram ${CMAKE_MAKE_PROGRAM}
    --build-options ${salt_package_options} -DSALT_SOURCE_DIR=${PROJECT_SOURCE_DIR}
    --test-command consumer)
