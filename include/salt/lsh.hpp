#pragma once
/// \file lsh.hpp
/// LSH attention (Kitaev et al., "Reformer: The Efficient Transformer", 2020), with the semantics of
/// HuggingFace's LSHSelfAttention (and trax), so that Reformer weights give the same numbers:
///
///     salt::lsh_options opt{.n_hashes = 4, .n_buckets = {64}, .chunk_length = 64, .chunks_before = 1,
///                           .causal = true};
///     auto rot = salt::lsh_rotations<float>::gaussian(/*heads=*/1, qk.cols(), opt, /*seed=*/7);
///     salt::row_matrix<float> out = salt::lsh_attention(qk, v, rot, opt);                 // one head
///     salt::lsh_attention(qkv, vv, outv, lsev, rot, opt, salt::key_padding{lengths});     // many heads, LSE
///
/// Queries and keys are shared ("qk"). Per head and hash round r, each position x gets the bucket
/// argmax([x R_r, -x R_r]) (first maximum on ties), R_r a (d, n_buckets/2) random rotation; each round's
/// positions are sorted stably by (bucket, position), the sorted rounds concatenated and cut into chunks of
/// chunk_length, and each chunk attends to itself and to chunks_before / chunks_after neighbouring chunks of
/// that concatenated sequence, cyclically (the first chunk of a round looks back into the previous round's
/// last chunk; a key that appears twice in one softmax counts twice). Keys are the qk vectors divided by
/// their RMS length (epsilon 1e-6) and by sqrt(d); queries are not scaled. Masks replace scores:
///  - a padding key (key_padding / key_mask) or, when causal, a key after the query's position is excluded
///    (salt uses -inf where HuggingFace uses -1e9: every row holds its own position at -1e5, so
///    exp(-1e9 - max) is exactly 0 in float and double alike, and the results are the same);
///  - every copy of the query's own position scores -1e5 (HuggingFace's value, a documented exception to
///    "no finite penalties"), so a query with no other valid key attends to itself, and that round's LSE
///    says so. This rule wins over the padding, causal and bucket_pure masks, as in HuggingFace.
/// Rounds are merged by their log-sum-exp (salt::merge_by_lse): out = sum_r exp(lse_r - logsumexp_r lse_r)
/// out_r, and the LSE returned is logsumexp_r lse_r (the log of the sum of the rounds' softmax normalisers).
///
/// Padding keys are hashed into an extra bucket after the others (sorted to the end of each round), as
/// HuggingFace does. Like HuggingFace in evaluation mode (ReformerModel pads the input):
///  - a sequence no longer than chunk_length is not hashed: it gets plain attention over all its keys with
///    the causal, padding and self rules, in one round (n_hashes, the rotations and bucket_pure are unused);
///  - a longer sequence that is not a multiple of chunk_length is padded to the next multiple with padding
///    positions (which then fill the end of every round); only the real rows are returned.
/// `n_buckets` may list several factors, HuggingFace's factorised hashing: the rotation of a round is then
/// (d, sum(factors)/2), factor i hashes with its slice of sum-of-previous/2 columns onward, and the bucket
/// is sum_i argmax_i * prod_{j<i} factor_j.
///
/// Cost per head: hashing O(n_hashes L d sum(factors)/2), counting sorts O(n_hashes (L + buckets)), and the
/// engine over n_hashes L sorted rows, each visiting (1 + chunks_before + chunks_after) chunk_length keys:
/// O(n_hashes L (1 + before + after) c d). Extra memory O(batch heads n_hashes L (d + dv)): the sorted copies
/// of qk, normalised keys, values and outputs; nothing of size L x L.
///
/// The parts: lsh/options.hpp (options, rotations, their checks), lsh/hashing.hpp (buckets, sort,
/// lsh_buckets), lsh/workspace.hpp (the sorted copies), lsh/prepare.hpp (hash, sort and gather every head),
/// lsh/chunk_mask.hpp (the engine's mask and score), lsh/attention.hpp (lsh_attention: the driver).

#include "lsh/options.hpp"
#include "lsh/hashing.hpp"
#include "lsh/workspace.hpp"
#include "lsh/prepare.hpp"
#include "lsh/chunk_mask.hpp"
#include "lsh/attention.hpp"
