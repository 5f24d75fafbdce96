// Replaces the global operator new and delete of the benchmark binaries to count allocations. Every
// block carries a header with its size, so sized and unsized deletes both subtract the right amount.
#include "alloc_counter.hpp"

#include <atomic>
#include <cstdlib>
#include <new>

namespace {

std::atomic<std::size_t> calls{0}, bytes{0}, live{0}, peak{0}, live_at_reset{0};
constexpr std::size_t header = 64;  // keeps every alignment up to 64 bytes

void* counted_alloc(std::size_t n, std::size_t align) {
  if (align < header) align = header;
  void* raw = std::aligned_alloc(align, (n + header + align - 1) / align * align + (align > header ? align : 0));
  if (raw == nullptr) throw std::bad_alloc();
  const std::size_t offset = align > header ? align : header;
  auto* user = static_cast<char*>(raw) + offset;
  reinterpret_cast<std::size_t*>(user)[-1] = n;
  reinterpret_cast<std::size_t*>(user)[-2] = offset;
  calls.fetch_add(1, std::memory_order_relaxed);
  bytes.fetch_add(n, std::memory_order_relaxed);
  const std::size_t now = live.fetch_add(n, std::memory_order_relaxed) + n;
  std::size_t p = peak.load(std::memory_order_relaxed);
  while (now > p && !peak.compare_exchange_weak(p, now, std::memory_order_relaxed)) {
  }
  return user;
}

void counted_free(void* p) noexcept {
  if (p == nullptr) return;
  auto* user = static_cast<char*>(p);
  const std::size_t n = reinterpret_cast<std::size_t*>(user)[-1];
  const std::size_t offset = reinterpret_cast<std::size_t*>(user)[-2];
  live.fetch_sub(n, std::memory_order_relaxed);
  std::free(user - offset);
}

}  // namespace

void* operator new(std::size_t n) { return counted_alloc(n, alignof(std::max_align_t)); }
void* operator new[](std::size_t n) { return counted_alloc(n, alignof(std::max_align_t)); }
void* operator new(std::size_t n, std::align_val_t a) { return counted_alloc(n, static_cast<std::size_t>(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted_alloc(n, static_cast<std::size_t>(a)); }
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }

namespace salt::bench {

void reset_alloc_stats() {
  calls = 0;
  bytes = 0;
  live_at_reset = live.load();
  peak = live.load();
}

alloc_stats read_alloc_stats() {
  return {calls.load(), bytes.load(), peak.load() - live_at_reset.load()};
}

}  // namespace salt::bench
