#pragma once
/// \file score.hpp
/// The score policies of exact attention: the scaled dot product, additive biases (table, ALiBi),
/// soft-capping, one function of the logit (elementwise_score), attention sinks, and `+`. The Synthesizer's learned logits,
/// score policies too, are a family of their own: synthesizer.hpp.

#include "score/bias.hpp"
#include "score/concept.hpp"
#include "score/dot_product.hpp"
#include "score/elementwise.hpp"
#include "score/sinks.hpp"
#include "score/softcap.hpp"
#include "score/sum.hpp"
