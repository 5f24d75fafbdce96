#pragma once
/// \file linear.hpp
/// Kernelized linear attention: feature maps (FAVOR+, trigonometric, ReLU, elu + 1, user-defined), their
/// random features, the non-causal and chunked causal kernels, and the recurrent state for decoding.
///
///     salt::favor_plus<float> phi(salt::random_features<float>::orthogonal(256, 64, /*seed=*/7));
///     salt::row_matrix<float> out = salt::linear_attention(q, k, v, phi);            // O(L m d)
///     salt::row_matrix<float> dec = salt::linear_attention(q, k, v, phi, salt::causal{});
///     salt::recurrent_state<float, salt::favor_plus<float>> state(phi, 64, 64);      // streaming

#include "linear/attention.hpp"
#include "linear/feature_map.hpp"
#include "linear/random_features.hpp"
#include "linear/recurrent_state.hpp"
