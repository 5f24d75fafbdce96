#pragma once
/// \file mask.hpp
/// Every mask policy, and `|` / `&` to compose them.

#include "mask/capabilities.hpp"
#include "mask/causal.hpp"
#include "mask/compose.hpp"
#include "mask/concept.hpp"
#include "mask/key_padding.hpp"
#include "mask/query_padding.hpp"
#include "mask/none.hpp"
#include "mask/sliding_window.hpp"
#include "mask/global_tokens.hpp"
#include "mask/segments.hpp"
#include "mask/block_layout.hpp"
#include "mask/bigbird.hpp"
#include "mask/sparse_transformer.hpp"
