// HandleTable<T>: the objects JavaScript refers to by number. Ids are never reused, so a closed or
// unknown handle fails with EBADF instead of reaching a recycled fd or a freed object.
// Runs on the main thread only (addon.cc calls it from Node-API callbacks).
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "sys-error.h"

template <class T>
class HandleTable {
 public:
  explicit HandleTable(uint32_t firstId) : next_(firstId) {}

  uint32_t add(std::shared_ptr<T> obj) {
    uint32_t id = next_;
    next_ += 8;  // ids of different tables never coincide (each table starts at a distinct residue)
    map_.emplace(id, std::move(obj));
    return id;
  }

  /** The live object, or EBADF naming `op`. */
  std::shared_ptr<T> get(double id, const char* op) const {
    auto it = map_.end();
    if (id >= 0 && id <= 4294967295.0) it = map_.find(static_cast<uint32_t>(id));
    if (it == map_.end()) throw SysError(EBADF, op);
    return it->second;
  }

  /** Removes and returns the object (EBADF if already gone). */
  std::shared_ptr<T> take(double id, const char* op) {
    std::shared_ptr<T> obj = get(id, op);
    map_.erase(static_cast<uint32_t>(id));
    return obj;
  }

  std::vector<std::shared_ptr<T>> takeAll() {
    std::vector<std::shared_ptr<T>> all;
    for (auto& kv : map_) all.push_back(kv.second);
    map_.clear();
    return all;
  }

  size_t size() const { return map_.size(); }

 private:
  uint32_t next_;
  std::unordered_map<uint32_t, std::shared_ptr<T>> map_;
};
