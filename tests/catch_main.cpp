// Catch2 v2's main, compiled once and linked into every test executable (v3 brings Catch2WithMain).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
