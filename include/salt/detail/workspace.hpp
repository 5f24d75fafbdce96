#pragma once
/// \file detail/workspace.hpp
/// Aligned scratch buffers, allocated once per thread per call (never inside a kernel's loops), through
/// ::operator new so that allocation counters see them.

#include <cstddef>
#include <cstring>
#include <new>
#include <utility>

#include "../config.hpp"
#include "simd.hpp"

namespace salt::detail {

/// A zero-initialised, cache-line-aligned array of `n` trivially constructible T.
template <class T>
class aligned_buffer {
 public:
  aligned_buffer() = default;
  explicit aligned_buffer(index n) : size_(n) {
    if (n == 0) return;
    data_ = static_cast<T*>(::operator new(sizeof(T) * static_cast<std::size_t>(n), std::align_val_t{workspace_alignment}));
    std::memset(static_cast<void*>(data_), 0, sizeof(T) * static_cast<std::size_t>(n));
  }
  aligned_buffer(aligned_buffer&& other) noexcept : data_(other.data_), size_(other.size_) {
    other.data_ = nullptr;
    other.size_ = 0;
  }
  aligned_buffer& operator=(aligned_buffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    return *this;
  }
  aligned_buffer(const aligned_buffer&) = delete;
  aligned_buffer& operator=(const aligned_buffer&) = delete;
  ~aligned_buffer() {
    if (data_) ::operator delete(data_, std::align_val_t{workspace_alignment});
  }

  T* data() const noexcept { return data_; }
  index size() const noexcept { return size_; }
  T& operator[](index i) const noexcept { return data_[i]; }

 private:
  T* data_ = nullptr;
  index size_ = 0;
};

}  // namespace salt::detail
