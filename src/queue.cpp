// queue.cpp — the shared-memory queue behind Queue<T>, JoinableQueue<T> and SimpleQueue<T>.
//
// Shared-memory layout (one memfd, layout version 1; offsets in bytes):
//
//   0      Header (512 B, one cache line per contended group)
//          +0   magic "MPQUEUE1" u64 | version u32 | kind u32 | fingerprint u64 | maxsize u64
//          +32  cells u32 | cell_bytes u32 | channels u32 | channel_bytes u32
//          +48  meta_offset u64 | data_offset u64 | channel_offset u64 | total_bytes u64
//          +64  tail u64                       (producers)
//          +128 head u64                       (consumers)
//          +192 not_empty u32 (futex) | consumers_waiting u32
//          +256 not_full u32 (futex)  | producers_waiting u32
//          +320 count u32 (items in a bounded queue)
//          +384 closed u32 | unfinished u32 (futex) | join_waiters u32 | channel_free u32 (futex)
//               | channel_waiters u32
//   512    CellMeta[cells]: { seq u64, claim u64 }            16 B per cell
//   ...    cell data: cells x 64 B, contiguous (a record of k cells is k*64 contiguous bytes)
//   ...    Channel[channels]: 192 B header + channel_bytes buffer each
//
// Ring protocol (Vyukov-style sequence numbers, positions are u64 and never wrap):
//   seq == pos        cell free for the lap of position pos
//   seq == pos + 1    first cell of a published record at pos
//   claim             0, or (tid << 32) | READER? | PAD? | cells: who owns the record starting
//                     here — its writer until it is taken, then its reader. A producer sets it
//                     (CAS 0 -> its claim) *before* advancing tail, and a consumer (CAS writer
//                     claim -> its claim) *before* advancing head, so a record's owner is always
//                     recorded and a dead owner can be found without guessing.
//   record            8-byte header { length u32, kind u8, 0 u8, 0 u16 } + payload
//                     kind item: the encoded item; pad: skip to the end of the ring;
//                     stream: { channel u32, 0 u32, total u64 } — the item streams through
//                     that side channel (single producer, single consumer byte ring).
#include "mproc/queue.hpp"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <thread>

#include "detail/sys.hpp"
#include "mproc/log.hpp"

namespace mproc::detail {

namespace {

using u32 = std::uint32_t;
using u64 = std::uint64_t;
using Deadline = QueueHandle::Deadline;
using Clock = QueueHandle::Clock;

constexpr u64 kMagic = 0x3145554555515050ULL;  // "PPQUEUE1" little-endian
constexpr u32 kLayoutVersion = 1;
constexpr u32 kCellBytes = 64;
constexpr u32 kCells = 16384;                // 1 MiB of cell data
constexpr u32 kMaxRecordCells = kCells / 4;  // records up to 256 KiB; larger ones stream
constexpr u32 kChannels = 4;
constexpr u32 kChannelBytes = 512 * 1024;
constexpr u32 kRecordHeader = 8;
constexpr u64 kMaxBounded = u64{1} << 30;

constexpr std::uint8_t kItem = 1, kPad = 2, kStream = 3;
constexpr u64 kReaderBit = u64{1} << 31;
constexpr u64 kPadBit = u64{1} << 30;
constexpr u64 kCellsMask = (u64{1} << 30) - 1;
constexpr u64 kSetupBit = u64{1} << 63;  // channel owner: being set up by its writer
constexpr u32 kAborted = 1;

struct Header {
  u64 magic;
  u32 version;
  u32 kind;
  u64 fingerprint;
  u64 maxsize;
  u32 cells;
  u32 cell_bytes;
  u32 channels;
  u32 channel_bytes;
  u64 meta_offset;
  u64 data_offset;
  u64 channel_offset;
  u64 total_bytes;
  alignas(64) u64 tail;
  alignas(64) u64 head;
  alignas(64) u32 not_empty;
  u32 consumers_waiting;
  alignas(64) u32 not_full;
  u32 producers_waiting;
  alignas(64) u32 count;
  alignas(64) u32 closed;
  u32 unfinished;
  u32 join_waiters;
  u32 channel_free;
  u32 channel_waiters;
};
static_assert(sizeof(Header) == 512 && std::is_standard_layout_v<Header>);
constexpr u64 kHeaderBytes = 512;

struct CellMeta {
  u64 seq;
  u64 claim;
};

struct Channel {
  u64 owner;  // 0 = free, else ring position + 1 of the record it carries (| kSetupBit)
  u32 writer;
  u32 reader;
  u64 total;
  u32 flags;
  u32 wake;  // futex: bumped on progress by either side
  u32 waiters;
  alignas(64) u64 written;
  alignas(64) u64 consumed;
};
static_assert(sizeof(Channel) == 192);

template <class T>
std::atomic_ref<T> at(T& x) noexcept {
  return std::atomic_ref<T>(x);
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

u64 make_claim(pid_t tid, u64 bits, u64 cells) {
  return (static_cast<u64>(static_cast<u32>(tid)) << 32) | bits | cells;
}
pid_t claim_tid(u64 c) {
  return static_cast<pid_t>(c >> 32);
}

u32 cells_for(u64 length) {
  return static_cast<u32>((length + kRecordHeader + kCellBytes - 1) / kCellBytes);
}

bool expired(const Deadline& d) {
  return d && Clock::now() >= *d;
}

/// Decrements a waiter count on scope exit (ready() may throw QueueClosed).
struct WaiterGuard {
  u32& waiters;
  ~WaiterGuard() { at(waiters).fetch_sub(1, std::memory_order_seq_cst); }
};

/// Waits until ready() is true: spins ~20 us, then futex-waits on `word` in slices. Every
/// 10 ms of waiting it calls stuck(), which recovers from dead peers. False at the deadline.
template <class Ready, class Stuck>
bool wait_until(u32& word, u32& waiters, const Deadline& deadline, Ready&& ready, Stuck&& stuck) {
  if (ready()) return true;
  if (expired(deadline)) return false;
  const auto start = Clock::now();
  for (int i = 0;; ++i) {
    cpu_relax();
    if (ready()) return true;
    if ((i & 63) == 63 && Clock::now() - start > std::chrono::microseconds(20)) break;
  }
  auto last_check = Clock::now();
  std::chrono::nanoseconds slice = std::chrono::milliseconds(1);
  for (;;) {
    const u32 seen = at(word).load(std::memory_order_acquire);
    at(waiters).fetch_add(1, std::memory_order_seq_cst);
    {
      WaiterGuard guard{waiters};
      if (ready()) return true;
      std::chrono::nanoseconds timeout = slice;
      if (deadline) {
        const auto left = *deadline - Clock::now();
        if (left <= std::chrono::nanoseconds::zero()) return false;
        timeout = std::min<std::chrono::nanoseconds>(timeout, left);
      }
      sys::futex_wait(&word, seen, timeout);
    }
    if (ready()) return true;
    if (expired(deadline)) return false;
    const auto now = Clock::now();
    if (now - last_check >= std::chrono::milliseconds(10)) {
      stuck();
      last_check = now;
      slice = std::min<std::chrono::nanoseconds>(slice * 2, std::chrono::milliseconds(50));
    }
  }
}

void bump_and_wake(u32& word, u32& waiters) {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (at(waiters).load(std::memory_order_relaxed) != 0) {
    at(word).fetch_add(1, std::memory_order_release);
    sys::futex_wake(&word, INT_MAX);
  }
}

/// Wakes the waiters of a word whose value is itself the condition (no bump).
void wake_waiters(u32& word, u32& waiters) {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (at(waiters).load(std::memory_order_relaxed) != 0) sys::futex_wake(&word, INT_MAX);
}

bool alive(pid_t tid) {
  return tid > 0 && sys::process_alive(tid);
}

}  // namespace

class QueueCore {
 public:
  explicit QueueCore(SharedSegment segment) : segment_(std::move(segment)) {
    auto* base = static_cast<std::byte*>(segment_.data());
    h_ = reinterpret_cast<Header*>(base);
    meta_ = reinterpret_cast<CellMeta*>(base + h_->meta_offset);
    data_ = base + h_->data_offset;
    channels_ = base + h_->channel_offset;
    mask_ = h_->cells - 1;
  }

  static std::size_t layout_bytes() {
    return kHeaderBytes + u64{kCells} * sizeof(CellMeta) + u64{kCells} * kCellBytes +
           u64{kChannels} * (sizeof(Channel) + kChannelBytes);
  }

  Header& h() const { return *h_; }
  const SharedSegment& segment() const { return segment_; }

  bool put(std::span<const std::span<const std::byte>> parts, const Deadline& deadline);
  bool get(QueueHandle::Sink sink, void* context, const Deadline& deadline);
  std::size_t qsize() const;
  bool empty() const;
  void close();
  void task_done();
  bool join(const Deadline& deadline);

 private:
  enum class Claim { ok, full, retry };
  enum class Take { taken, empty, inflight, busy, retry };
  struct Taken {
    u64 pos = 0;
    u32 idx = 0;
    u32 cells = 0;
    u32 length = 0;
    std::uint8_t kind = 0;
  };

  CellMeta& meta(u64 idx) const { return meta_[idx]; }
  std::byte* cell(u64 idx) const { return data_ + idx * kCellBytes; }
  Channel& channel(u32 i) const {
    return *reinterpret_cast<Channel*>(channels_ + u64{i} * (sizeof(Channel) + kChannelBytes));
  }
  std::byte* channel_buffer(u32 i) const {
    return channels_ + u64{i} * (sizeof(Channel) + kChannelBytes) + sizeof(Channel);
  }
  bool joinable() const { return h_->kind == queue_kind_joinable; }
  void check_open() const {
    if (at(h_->closed).load(std::memory_order_acquire) != 0) {
      throw QueueClosed("Queue: put() on a closed queue");
    }
  }

  void write_header(u64 idx, u32 length, std::uint8_t kind) const {
    std::byte* p = cell(idx);
    std::memcpy(p, &length, 4);
    p[4] = static_cast<std::byte>(kind);
    p[5] = p[6] = p[7] = std::byte{0};
  }
  void publish(u64 pos) const {
    at(meta(pos & mask_).seq).store(pos + 1, std::memory_order_release);
  }
  void release(u64 pos, u32 cells) const {
    const u64 idx = pos & mask_;
    at(meta(idx).claim).store(0, std::memory_order_relaxed);
    for (u32 j = cells; j-- > 0;) {
      at(meta(idx + j).seq).store(pos + j + h_->cells, std::memory_order_release);
    }
    bump_and_wake(h_->not_full, h_->producers_waiting);
  }
  void uncount_item() const {
    if (h_->maxsize != 0) {
      at(h_->count).fetch_sub(1, std::memory_order_acq_rel);
      bump_and_wake(h_->not_full, h_->producers_waiting);
    }
  }
  void drop_unfinished() const {
    if (!joinable()) return;
    if (at(h_->unfinished).fetch_sub(1, std::memory_order_acq_rel) == 1) {
      wake_waiters(h_->unfinished, h_->join_waiters);
    }
  }
  void free_channel(u32 i, u64 owner) const {
    u64 expected = owner;
    if (at(channel(i).owner).compare_exchange_strong(expected, 0, std::memory_order_acq_rel)) {
      at(h_->channel_free).fetch_add(1, std::memory_order_release);
      sys::futex_wake(&h_->channel_free, INT_MAX);
    }
  }

  Claim claim(u64 cells, pid_t me, u64& pos);
  Take take(Taken& out, pid_t me);
  void recover_at_head(pid_t me);
  void recover_for_producers();
  void recover_channels();
  bool acquire_channel(u64 pos, const Deadline& deadline, u32& index);
  bool stream_out(u32 ci, u64 pos, std::span<const std::span<const std::byte>> parts, u64 length,
                  const Deadline& deadline, pid_t me);
  bool stream_in(const Taken& t, QueueHandle::Sink sink, void* context, pid_t me);

  SharedSegment segment_;
  Header* h_ = nullptr;
  CellMeta* meta_ = nullptr;
  std::byte* data_ = nullptr;
  std::byte* channels_ = nullptr;
  u64 mask_ = 0;
};

// ---- producers ------------------------------------------------------------------------------

QueueCore::Claim QueueCore::claim(u64 cells, pid_t me, u64& pos) {
  const u64 t = at(h_->tail).load(std::memory_order_acquire);
  const u64 idx = t & mask_;
  u64 k = cells;
  u64 bits = 0;
  if (idx + k > h_->cells) {  // a record never wraps: pad to the end of the ring first
    k = h_->cells - idx;
    bits = kPadBit;
  }
  for (u64 j = 0; j < k; ++j) {
    const u64 s = at(meta(idx + j).seq).load(std::memory_order_acquire);
    if (s != t + j) return s < t + j ? Claim::full : Claim::retry;
  }
  const u64 mine = make_claim(me, bits, k);
  u64 expected = 0;
  if (!at(meta(idx).claim).compare_exchange_strong(expected, mine, std::memory_order_acq_rel)) {
    return Claim::retry;  // another producer is claiming this cell (recovered if it died)
  }
  if (at(h_->tail).load(std::memory_order_acquire) != t ||
      at(meta(idx).seq).load(std::memory_order_acquire) != t) {
    expected = mine;
    at(meta(idx).claim).compare_exchange_strong(expected, 0, std::memory_order_acq_rel);
    return Claim::retry;
  }
  at(h_->tail).store(t + k, std::memory_order_release);
  if (bits & kPadBit) {
    write_header(idx, static_cast<u32>(k * kCellBytes - kRecordHeader), kPad);
    publish(t);
    return Claim::retry;
  }
  pos = t;
  return Claim::ok;
}

void QueueCore::recover_for_producers() {
  // A producer that died holding the claim of the cell at tail, before advancing tail.
  const u64 t = at(h_->tail).load(std::memory_order_acquire);
  const u64 tidx = t & mask_;
  u64 c = at(meta(tidx).claim).load(std::memory_order_acquire);
  if (c != 0 && !(c & kReaderBit) && at(meta(tidx).seq).load() == t && at(h_->tail).load() == t &&
      !alive(claim_tid(c))) {
    at(meta(tidx).claim).compare_exchange_strong(c, 0);
  }
  // Consumers that died after taking a record, before releasing its cells.
  const u64 head = at(h_->head).load(std::memory_order_acquire);
  for (u64 idx = 0; idx < h_->cells; ++idx) {
    u64 claim = at(meta(idx).claim).load(std::memory_order_acquire);
    if (!(claim & kReaderBit)) continue;
    const u64 s = at(meta(idx).seq).load(std::memory_order_acquire);
    const u64 pos = s - 1;
    const u64 k = claim & kCellsMask;
    if ((pos & mask_) != idx || pos >= head || k == 0 || idx + k > h_->cells) continue;
    if (alive(claim_tid(claim))) continue;
    if (!at(meta(idx).claim).compare_exchange_strong(claim, 0)) continue;
    log(LogLevel::warning, "Queue: recycled the cells of an item whose reader (tid " +
                               std::to_string(claim_tid(claim)) + ") died while taking it");
    release(pos, static_cast<u32>(k));
  }
  recover_channels();
}

void QueueCore::recover_channels() {
  const u64 head = at(h_->head).load(std::memory_order_acquire);
  for (u32 i = 0; i < h_->channels; ++i) {
    Channel& ch = channel(i);
    const u64 owner = at(ch.owner).load(std::memory_order_acquire);
    if (owner == 0 || (owner & kSetupBit)) continue;
    const u64 pos = owner - 1;
    const bool writer_done = at(ch.written).load() == at(ch.total).load() ||
                             (at(ch.flags).load() & kAborted) != 0 ||
                             !alive(static_cast<pid_t>(at(ch.writer).load()));
    if (!writer_done) continue;  // a live writer recovers from a dead reader itself
    const u32 reader = at(ch.reader).load(std::memory_order_acquire);
    if (reader != 0) {
      if (!alive(static_cast<pid_t>(reader))) free_channel(i, owner);
    } else if (head > pos) {
      const u64 idx = pos & mask_;
      const u64 s = at(meta(idx).seq).load(std::memory_order_acquire);
      const u64 c = at(meta(idx).claim).load(std::memory_order_acquire);
      const bool attaching = s == pos + 1 && (c & kReaderBit) && alive(claim_tid(c));
      if (!attaching && at(ch.reader).load(std::memory_order_acquire) == 0) {
        free_channel(i, owner);
      }
    }
  }
}

bool QueueCore::acquire_channel(u64 pos, const Deadline& deadline, u32& index) {
  const auto try_acquire = [&] {
    for (u32 i = 0; i < h_->channels; ++i) {
      u64 expected = 0;
      if (at(channel(i).owner)
              .compare_exchange_strong(expected, (pos + 1) | kSetupBit,
                                       std::memory_order_acq_rel)) {
        index = i;
        return true;
      }
    }
    return false;
  };
  return wait_until(h_->channel_free, h_->channel_waiters, deadline, try_acquire,
                    [&] { recover_channels(); });
}

bool QueueCore::put(std::span<const std::span<const std::byte>> parts, const Deadline& deadline) {
  u64 length = 0;
  for (const auto& p : parts) length += p.size();
  if (length > max_message_size()) {
    throw SerializationError("Queue: an item of " + std::to_string(length) +
                             " bytes exceeds max_message_size() (" +
                             std::to_string(max_message_size()) + ")");
  }
  check_open();
  const bool stream = length + kRecordHeader > u64{kMaxRecordCells} * kCellBytes;
  const u64 cells = stream ? 1 : cells_for(length);
  const pid_t me = sys::this_thread_id();

  // Counts taken before the record exists are given back if the put does not complete.
  bool counted = false, unfinished = false, done = false;
  struct Undo {
    QueueCore& q;
    bool& counted;
    bool& unfinished;
    bool& done;
    ~Undo() {
      if (done) return;
      if (counted) q.uncount_item();
      if (unfinished) q.drop_unfinished();
    }
  } undo{*this, counted, unfinished, done};

  if (h_->maxsize != 0) {
    const bool ok = wait_until(
        h_->not_full, h_->producers_waiting, deadline,
        [&] {
          check_open();
          u32 c = at(h_->count).load(std::memory_order_acquire);
          while (c < h_->maxsize) {
            if (at(h_->count).compare_exchange_weak(c, c + 1, std::memory_order_acq_rel)) {
              return true;
            }
          }
          return false;
        },
        [] {});
    if (!ok) return false;
    counted = true;
  }
  if (joinable()) {
    at(h_->unfinished).fetch_add(1, std::memory_order_acq_rel);
    unfinished = true;
  }

  u64 pos = 0;
  const bool claimed = wait_until(
      h_->not_full, h_->producers_waiting, deadline,
      [&] {
        check_open();
        for (int spins = 0; spins < 4096; ++spins) {
          switch (claim(cells, me, pos)) {
            case Claim::ok: return true;
            case Claim::full: return false;
            case Claim::retry: break;
          }
        }
        return false;
      },
      [&] { recover_for_producers(); });
  if (!claimed) return false;
  const u64 idx = pos & mask_;

  if (!stream) {
    write_header(idx, static_cast<u32>(length), kItem);
    std::byte* out = cell(idx) + kRecordHeader;
    for (const auto& p : parts) {
      if (!p.empty()) std::memcpy(out, p.data(), p.size());
      out += p.size();
    }
    publish(pos);
    done = true;
    bump_and_wake(h_->not_empty, h_->consumers_waiting);
    return true;
  }

  u32 ci = 0;
  bool have_channel = false;
  try {
    have_channel = acquire_channel(pos, deadline, ci);
  } catch (...) {
    write_header(idx, kCellBytes - kRecordHeader, kPad);
    publish(pos);
    throw;
  }
  if (!have_channel) {
    // The record is ours: turn it into padding so consumers skip it.
    write_header(idx, kCellBytes - kRecordHeader, kPad);
    publish(pos);
    bump_and_wake(h_->not_empty, h_->consumers_waiting);
    return false;
  }
  Channel& ch = channel(ci);
  at(ch.writer).store(static_cast<u32>(me), std::memory_order_relaxed);
  at(ch.reader).store(0, std::memory_order_relaxed);
  at(ch.total).store(length, std::memory_order_relaxed);
  at(ch.flags).store(0, std::memory_order_relaxed);
  at(ch.written).store(0, std::memory_order_relaxed);
  at(ch.consumed).store(0, std::memory_order_relaxed);
  at(ch.owner).store(pos + 1, std::memory_order_release);
  write_header(idx, 16, kStream);
  std::memcpy(cell(idx) + kRecordHeader, &ci, 4);
  std::memset(cell(idx) + kRecordHeader + 4, 0, 4);
  std::memcpy(cell(idx) + kRecordHeader + 8, &length, 8);
  publish(pos);
  // From here the item is in the queue: a failure below is reported to the reader through
  // the channel (aborted), never by leaving the record half-made.
  done = true;
  bump_and_wake(h_->not_empty, h_->consumers_waiting);
  return stream_out(ci, pos, parts, length, deadline, me);
}

bool QueueCore::stream_out(u32 ci, u64 pos, std::span<const std::span<const std::byte>> parts,
                           u64 length, const Deadline& deadline, pid_t me) {
  static_cast<void>(me);
  Channel& ch = channel(ci);
  std::byte* buffer = channel_buffer(ci);
  const u64 capacity = h_->channel_bytes;
  const u64 idx = pos & mask_;
  std::size_t part = 0, part_off = 0;
  u64 off = 0;
  bool reader_gone = false;
  while (off < length) {
    u64 consumed = at(ch.consumed).load(std::memory_order_acquire);
    if (off - consumed == capacity) {
      const bool ok = wait_until(
          ch.wake, ch.waiters, deadline,
          [&] {
            return reader_gone || at(ch.consumed).load(std::memory_order_acquire) != consumed;
          },
          [&] {
            const u32 reader = at(ch.reader).load(std::memory_order_acquire);
            if (reader != 0) {
              reader_gone = !alive(static_cast<pid_t>(reader));
            } else if (at(h_->head).load(std::memory_order_acquire) > pos) {
              const u64 s = at(meta(idx).seq).load(std::memory_order_acquire);
              const u64 c = at(meta(idx).claim).load(std::memory_order_acquire);
              const bool attaching = s == pos + 1 && (c & kReaderBit) && alive(claim_tid(c));
              reader_gone = !attaching && at(ch.reader).load(std::memory_order_acquire) == 0;
            }
          });
      if (reader_gone) {
        log(LogLevel::warning, "Queue: the process reading a large item died; the item is lost");
        free_channel(ci, pos + 1);
        return true;
      }
      if (!ok) {
        // Last touch of the channel: the reader drops the item and frees the channel.
        at(ch.flags).fetch_or(kAborted, std::memory_order_release);
        at(ch.wake).fetch_add(1, std::memory_order_release);
        sys::futex_wake(&ch.wake, INT_MAX);
        return false;
      }
      continue;
    }
    const u64 at_off = off % capacity;
    u64 n = std::min({capacity - (off - consumed), length - off, capacity - at_off});
    u64 copied = 0;
    while (copied < n) {
      const auto& p = parts[part];
      const u64 take = std::min<u64>(n - copied, p.size() - part_off);
      if (take != 0) std::memcpy(buffer + at_off + copied, p.data() + part_off, take);
      copied += take;
      part_off += take;
      if (part_off == p.size()) {
        ++part;
        part_off = 0;
      }
    }
    off += n;
    at(ch.written).store(off, std::memory_order_release);
    bump_and_wake(ch.wake, ch.waiters);
  }
  return true;
}

// ---- consumers ------------------------------------------------------------------------------

QueueCore::Take QueueCore::take(Taken& out, pid_t me) {
  const u64 h = at(h_->head).load(std::memory_order_acquire);
  const u64 idx = h & mask_;
  const u64 s = at(meta(idx).seq).load(std::memory_order_acquire);
  if (s != h + 1) {
    if (s > h + 1) return Take::retry;
    return at(h_->tail).load(std::memory_order_acquire) <= h ? Take::empty : Take::inflight;
  }
  u32 length = 0;
  std::memcpy(&length, cell(idx), 4);
  const auto kind = static_cast<std::uint8_t>(cell(idx)[4]);
  const u64 k = cells_for(length);
  if ((kind != kItem && kind != kPad && kind != kStream) || idx + k > h_->cells ||
      (kind == kStream && length != 16) || (kind == kItem && k > kMaxRecordCells)) {
    if (at(h_->head).load() != h) return Take::retry;  // torn read of a recycled cell
    throw ProtocolError("Queue: corrupted record in shared memory at position " +
                        std::to_string(h));
  }
  u64 c = at(meta(idx).claim).load(std::memory_order_acquire);
  if (c & kReaderBit) return Take::busy;  // another consumer is taking it
  const u64 mine = make_claim(me, kReaderBit | (kind == kPad ? kPadBit : 0), k);
  if (!at(meta(idx).claim).compare_exchange_strong(c, mine, std::memory_order_acq_rel)) {
    return Take::retry;
  }
  if (at(h_->head).load(std::memory_order_acquire) != h ||
      at(meta(idx).seq).load(std::memory_order_acquire) != h + 1) {
    u64 expected = mine;
    at(meta(idx).claim).compare_exchange_strong(expected, c, std::memory_order_acq_rel);
    return Take::retry;
  }
  at(h_->head).store(h + k, std::memory_order_release);
  if (kind != kPad) uncount_item();
  out = Taken{h, static_cast<u32>(idx), static_cast<u32>(k), length, kind};
  return Take::taken;
}

void QueueCore::recover_at_head(pid_t me) {
  const u64 h = at(h_->head).load(std::memory_order_acquire);
  const u64 idx = h & mask_;
  const u64 s = at(meta(idx).seq).load(std::memory_order_acquire);
  u64 c = at(meta(idx).claim).load(std::memory_order_acquire);
  if (c == 0 || alive(claim_tid(c))) return;
  if (s == h + 1 && (c & kReaderBit)) {
    // A consumer died between claiming this record and advancing head: let others take it.
    at(meta(idx).claim).compare_exchange_strong(c, 0, std::memory_order_acq_rel);
    return;
  }
  if (s != h || (c & kReaderBit) || at(h_->tail).load(std::memory_order_acquire) <= h) return;
  // The writer died before publishing: skip its record.
  const u64 k = c & kCellsMask;
  const u64 mine = make_claim(me, kReaderBit | (c & kPadBit), k);
  if (k == 0 || idx + k > h_->cells) return;
  if (!at(meta(idx).claim).compare_exchange_strong(c, mine, std::memory_order_acq_rel)) return;
  if (at(h_->head).load() != h || at(meta(idx).seq).load() != h) {
    u64 expected = mine;
    at(meta(idx).claim).compare_exchange_strong(expected, c);
    return;
  }
  at(h_->head).store(h + k, std::memory_order_release);
  for (u32 i = 0; i < h_->channels; ++i) {
    free_channel(i, h + 1);
    free_channel(i, (h + 1) | kSetupBit);
  }
  if (!(c & kPadBit)) {
    uncount_item();
    drop_unfinished();
    log(LogLevel::warning, "Queue: skipped an item whose writer (tid " +
                               std::to_string(claim_tid(c)) + ") died before finishing it");
  }
  release(h, static_cast<u32>(k));
}

bool QueueCore::stream_in(const Taken& t, QueueHandle::Sink sink, void* context, pid_t me) {
  u32 ci = 0;
  u64 total = 0;
  std::memcpy(&ci, cell(t.idx) + kRecordHeader, 4);
  std::memcpy(&total, cell(t.idx) + kRecordHeader + 8, 8);
  if (ci >= h_->channels || at(channel(ci).owner).load(std::memory_order_acquire) != t.pos + 1) {
    release(t.pos, t.cells);
    drop_unfinished();
    return false;
  }
  Channel& ch = channel(ci);
  at(ch.reader).store(static_cast<u32>(me), std::memory_order_seq_cst);
  release(t.pos, t.cells);
  struct Free {
    QueueCore& q;
    u32 ci;
    u64 owner;
    ~Free() { q.free_channel(ci, owner); }
  } free_on_exit{*this, ci, t.pos + 1};

  std::unique_ptr<std::byte[]> buffer;
  if (total <= max_message_size())
    buffer.reset(new (std::nothrow) std::byte[total == 0 ? 1 : total]);
  const std::byte* in = channel_buffer(ci);
  const u64 capacity = h_->channel_bytes;
  u64 got = 0;
  bool writer_gone = false;
  while (got < total) {
    const u64 written = at(ch.written).load(std::memory_order_acquire);
    if (written > got) {
      const u64 n = std::min(written - got, capacity - got % capacity);
      if (buffer) std::memcpy(buffer.get() + got, in + got % capacity, n);
      got += n;
      at(ch.consumed).store(got, std::memory_order_release);
      bump_and_wake(ch.wake, ch.waiters);
      continue;
    }
    if ((at(ch.flags).load(std::memory_order_acquire) & kAborted) || writer_gone) {
      if (writer_gone) {
        log(LogLevel::warning, "Queue: dropped a large item whose writer died mid-put");
      }
      drop_unfinished();
      return false;
    }
    wait_until(
        ch.wake, ch.waiters, std::nullopt,
        [&] {
          return writer_gone || at(ch.written).load(std::memory_order_acquire) != written ||
                 (at(ch.flags).load(std::memory_order_acquire) & kAborted) != 0;
        },
        [&] { writer_gone = !alive(static_cast<pid_t>(at(ch.writer).load())); });
    if (writer_gone && at(ch.written).load(std::memory_order_acquire) != written) {
      writer_gone = false;  // it finished (or progressed) just before exiting: take the bytes
    }
  }
  if (!buffer) {
    drop_unfinished();
    throw ProtocolError("Queue: an item of " + std::to_string(total) +
                        " bytes exceeds max_message_size() or available memory (" +
                        std::to_string(max_message_size()) + ")");
  }
  sink(context, std::span<const std::byte>(buffer.get(), total));
  return true;
}

bool QueueCore::get(QueueHandle::Sink sink, void* context, const Deadline& deadline) {
  const pid_t me = sys::this_thread_id();
  for (;;) {
    Taken t;
    const bool ok = wait_until(
        h_->not_empty, h_->consumers_waiting, deadline,
        [&] {
          for (int spins = 0; spins < 4096; ++spins) {
            switch (take(t, me)) {
              case Take::taken: return true;
              case Take::empty:
                if (at(h_->closed).load(std::memory_order_acquire) != 0 &&
                    at(h_->tail).load(std::memory_order_acquire) ==
                        at(h_->head).load(std::memory_order_acquire)) {
                  throw QueueClosed("Queue: get() on a closed, empty queue");
                }
                return false;
              case Take::inflight:
              case Take::busy: return false;
              case Take::retry: break;
            }
          }
          return false;
        },
        [&] { recover_at_head(me); });
    if (!ok) return false;
    if (t.kind == kPad) {
      release(t.pos, t.cells);
      continue;
    }
    if (t.kind == kStream) {
      if (stream_in(t, sink, context, me)) return true;
      continue;
    }
    struct Release {
      const QueueCore& q;
      const Taken& t;
      ~Release() { q.release(t.pos, t.cells); }
    } release_on_exit{*this, t};
    sink(context, std::span<const std::byte>(cell(t.idx) + kRecordHeader, t.length));
    return true;
  }
}

std::size_t QueueCore::qsize() const {
  if (h_->maxsize != 0) return at(h_->count).load(std::memory_order_acquire);
  const u64 head = at(h_->head).load(std::memory_order_acquire);
  const u64 tail = at(h_->tail).load(std::memory_order_acquire);
  std::size_t n = 0;
  u64 pos = head;
  while (pos < tail && pos - head < h_->cells) {
    const u64 idx = pos & mask_;
    const u64 c = at(meta(idx).claim).load(std::memory_order_acquire);
    const u64 s = at(meta(idx).seq).load(std::memory_order_acquire);
    const u64 k = c & kCellsMask;
    if (c == 0 || k == 0) break;  // released under us: a snapshot is all qsize promises
    if (s == pos + 1 && !(c & (kPadBit | kReaderBit))) ++n;
    pos += k;
  }
  return n;
}

bool QueueCore::empty() const {
  const u64 h = at(h_->head).load(std::memory_order_acquire);
  if (at(h_->tail).load(std::memory_order_acquire) <= h) return true;
  return qsize() == 0;
}

void QueueCore::close() {
  at(h_->closed).store(1, std::memory_order_release);
  for (u32* word : {&h_->not_empty, &h_->not_full, &h_->channel_free}) {
    at(*word).fetch_add(1, std::memory_order_release);
    sys::futex_wake(word, INT_MAX);
  }
}

void QueueCore::task_done() {
  u32 n = at(h_->unfinished).load(std::memory_order_acquire);
  do {
    if (n == 0) {
      throw UsageError("JoinableQueue: task_done() called more times than items were put");
    }
  } while (!at(h_->unfinished).compare_exchange_weak(n, n - 1, std::memory_order_acq_rel));
  if (n == 1) wake_waiters(h_->unfinished, h_->join_waiters);
}

bool QueueCore::join(const Deadline& deadline) {
  return wait_until(
      h_->unfinished, h_->join_waiters, deadline,
      [&] { return at(h_->unfinished).load(std::memory_order_acquire) == 0; }, [] {});
}

// ---- handle ---------------------------------------------------------------------------------

QueueHandle QueueHandle::create(std::size_t maxsize, std::uint32_t kind,
                                std::uint64_t fingerprint) {
  if (maxsize > kMaxBounded) {
    throw UsageError("Queue: maxsize must be at most " + std::to_string(kMaxBounded) + " (got " +
                     std::to_string(maxsize) + "); pass 0 for no item limit");
  }
  SharedSegment segment = SharedSegment::create(QueueCore::layout_bytes(), "mproc-queue");
  auto* h = static_cast<Header*>(segment.data());
  h->magic = kMagic;
  h->version = kLayoutVersion;
  h->kind = kind;
  h->fingerprint = fingerprint;
  h->maxsize = maxsize;
  h->cells = kCells;
  h->cell_bytes = kCellBytes;
  h->channels = kChannels;
  h->channel_bytes = kChannelBytes;
  h->meta_offset = kHeaderBytes;
  h->data_offset = kHeaderBytes + u64{kCells} * sizeof(CellMeta);
  h->channel_offset = h->data_offset + u64{kCells} * kCellBytes;
  h->total_bytes = QueueCore::layout_bytes();
  auto* meta = reinterpret_cast<CellMeta*>(static_cast<std::byte*>(segment.data()) + kHeaderBytes);
  for (u64 i = 0; i < kCells; ++i) meta[i].seq = i;
  QueueHandle q;
  q.core_ = std::make_shared<QueueCore>(std::move(segment));
  return q;
}

namespace {
QueueCore& need(const std::shared_ptr<QueueCore>& core) {
  if (!core) throw UsageError("Queue: this handle is empty (moved from)");
  return *core;
}
}  // namespace

bool QueueHandle::put(std::span<const std::span<const std::byte>> parts, Deadline deadline) const {
  return need(core_).put(parts, deadline);
}
bool QueueHandle::get(Sink sink, void* context, Deadline deadline) const {
  return need(core_).get(sink, context, deadline);
}
std::size_t QueueHandle::qsize() const {
  return need(core_).qsize();
}
bool QueueHandle::empty() const {
  return need(core_).empty();
}
bool QueueHandle::full() const {
  const std::size_t m = maxsize();
  return m != 0 && qsize() >= m;
}
void QueueHandle::close() const {
  need(core_).close();
}
bool QueueHandle::closed() const {
  return at(need(core_).h().closed).load(std::memory_order_acquire) != 0;
}
std::size_t QueueHandle::maxsize() const {
  return need(core_).h().maxsize;
}
void QueueHandle::task_done() const {
  need(core_).task_done();
}
bool QueueHandle::join(Deadline deadline) const {
  return need(core_).join(deadline);
}

void QueueHandle::encode(Encoder& out) const {
  const QueueCore& core = need(core_);
  mproc::encode(out, core.segment());
  out.write_bytes(&core.h().kind, sizeof(u32));
  out.write_bytes(&core.h().fingerprint, sizeof(u64));
}

QueueHandle QueueHandle::decode(Decoder& in, std::uint32_t kind, std::uint64_t fingerprint) {
  SharedSegment segment = handle_codec<SharedSegment>::decode(in);
  u32 got_kind = 0;
  u64 got_fingerprint = 0;
  in.read_bytes(&got_kind, sizeof got_kind);
  in.read_bytes(&got_fingerprint, sizeof got_fingerprint);
  if (segment.size() < QueueCore::layout_bytes()) {
    throw ProtocolError("Queue: the received segment is too small to be a queue");
  }
  const auto* h = static_cast<const Header*>(segment.data());
  if (h->magic != kMagic || h->version != kLayoutVersion || h->cells != kCells ||
      h->cell_bytes != kCellBytes || h->channels != kChannels ||
      h->channel_bytes != kChannelBytes || h->total_bytes != QueueCore::layout_bytes() ||
      h->kind != got_kind || h->fingerprint != got_fingerprint) {
    throw ProtocolError("Queue: the received segment is not a queue of this layout version");
  }
  if (got_kind != kind || got_fingerprint != fingerprint) {
    throw SerializationError(
        "Queue: the received handle is for another queue type or item type than the one "
        "asked for");
  }
  QueueHandle q;
  q.core_ = std::make_shared<QueueCore>(std::move(segment));
  return q;
}

Encoder& queue_scratch_encoder() {
  thread_local Encoder encoder;
  return encoder;
}

void queue_release_scratch(Encoder& out) noexcept {
  out.clear();
  if (out.bytes().capacity() > (std::size_t{1} << 20)) {
    std::vector<std::byte>().swap(out.bytes());
  }
}

void throw_queue_item_has_fds() {
  throw UsageError(
      "Queue: items cannot carry descriptors (Connection, other queues...): shared memory "
      "cannot hold them; send such handles as Process arguments or through a Pipe");
}

void throw_queue_item_size(std::size_t got, std::size_t expected) {
  throw ProtocolError("Queue: an item of " + std::to_string(got) + " bytes where " +
                      std::to_string(expected) + " were expected");
}

}  // namespace mproc::detail
