#pragma once
/// \file score.hpp
/// Every score policy: the scaled dot product, additive biases (table, ALiBi), soft-capping, Synthesizer
/// sources (Random, factorized Random, Dense), and `+`.

#include "score/bias.hpp"
#include "score/concept.hpp"
#include "score/dot_product.hpp"
#include "score/elementwise.hpp"
#include "score/softcap.hpp"
#include "score/sum.hpp"
#include "score/synthesizer.hpp"
