#pragma once
// The one place that knows which Catch2 is installed: v3 (catch_all.hpp) or v2.13 (catch.hpp, Debian 12).
#if __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif
