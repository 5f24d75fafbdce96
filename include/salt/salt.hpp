#pragma once
/// \file salt.hpp
/// The umbrella header: every public header of salt, nothing else.

#include "attention.hpp"
#include "attention_backward.hpp"
#include "block_mask.hpp"
#include "borrowed_span.hpp"
#include "config.hpp"
#include "error.hpp"
#include "kv_cache.hpp"
#include "linear.hpp"
#include "linformer.hpp"
#include "linformer_backward.hpp"
#include "lsh.hpp"
#include "mask.hpp"
#include "merge.hpp"
#include "plan.hpp"
#include "precision.hpp"
#include "random.hpp"
#include "score.hpp"
#include "synthesizer.hpp"
#include "tensor.hpp"
