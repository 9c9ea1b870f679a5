// demand-paging-ref.c: the C reference for `npm run bench` (backends/native/bench/demand-paging.bench.ts).
//
// The least a program can do to measure userfaultfd demand paging of a KVM guest on this kernel, with
// the same shape as kvmconf's native run (and as upstream's demand_paging_test without -a/-r/-d/-o):
// one memslot of `pages` 4 KiB pages per vCPU at the top of a 64 GiB identity map, one thread per vCPU
// whose guest writes one u64 at the start of every page of its slice and then does `out` to port 0x10,
// one userfaultfd per vCPU with one reader thread that polls {uffd, stop pipe} and resolves each fault
// with UFFDIO_COPY of a 0xAB page (MISSING, anonymous memory) or UFFDIO_CONTINUE (MINOR, a memfd whose
// page cache was filled through a second mapping first). The clock runs from releasing the vCPU
// threads until the last one has joined.
//
// Usage: demand-paging-ref -v <vcpus> -p <pages per vcpu> -u MISSING|MINOR|NONE [-c <pcpu>,<pcpu>,...]
// -c pins vCPU i's thread to the i-th pCPU of the list and, with one entry more, the main thread to the
// last one before the reader threads are created (so they inherit it), as demand_paging_test's -c does.
// Prints one JSON line: {"vcpus":..,"pages_per_vcpu":..,"mode":"..","elapsed_ns":..,"overall_rate":..}
// Any failure prints a message on stderr and exits 1.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096ull
#define BOOT_SIZE (2ull << 20)
#define IDENTITY_END (64ull << 30)
#define PML4 0x1000ull
#define PDPT 0x2000ull
#define PD0 0x3000ull
#define GDT 0x43000ull
#define TSS 0x44000ull
#define CODE0 0x80000ull
#define AREA 0x4000ull
#define SYNC_PORT 0x10
#define MAX_VCPUS 16

#define die(...) do { fprintf(stderr, "demand-paging-ref: " __VA_ARGS__); fputc('\n', stderr); exit(1); } while (0)
#define check(cond, what) do { if (!(cond)) die("%s: %s", what, strerror(errno)); } while (0)

enum mode { NONE, MISSING, MINOR };

static int kvm, vm, run_size;
static enum mode mode;
static uint64_t pages, region_gpa, region_size;
static uint8_t *region, *boot;
static uint8_t prototype[PAGE];
static atomic_int ready, go;

struct vcpu {
  int fd;
  int pcpu;  // -1: not pinned
  struct kvm_run *run;
  pthread_t thread;
  int uffd, pipe[2];
  pthread_t reader;
};
static struct vcpu vcpus[MAX_VCPUS];

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void put64(uint64_t gpa, uint64_t v) { memcpy(boot + gpa, &v, 8); }

// Page tables identity-mapping [0, 64 GiB) with 2 MiB pages, a GDT and a TSS, as kvmconf's boot image.
static void build_boot(void) {
  put64(PML4, PDPT | 3);
  for (uint64_t i = 0; i < 64; i++) {
    put64(PDPT + i * 8, (PD0 + i * PAGE) | 3);
    for (uint64_t j = 0; j < 512; j++) put64(PD0 + i * PAGE + j * 8, ((i * 512 + j) << 21) | 0x83);
  }
  put64(GDT + 0x08, 0x00af9b000000ffffull);  // 64-bit code
  put64(GDT + 0x10, 0x00cf93000000ffffull);  // data
  put64(GDT + 0x18, 0x0000000000000067ull | ((TSS & 0xffffff) << 16) | (0x8bull << 40) | ((TSS >> 24) << 56));
  uint16_t iomap = 0x68;
  memcpy(boot + TSS + 102, &iomap, 2);
}

// The guest: mov rsi, gpa; mov rcx, pages; mov rdx, 4096; mov rax, value;
// 1: mov [rsi], rax; add rsi, rdx; sub rcx, 1; jnz 1b; mov edx, 0x10; mov eax, 1; out dx, eax; 2: hlt; jmp 2b
static void write_code(uint64_t at, uint64_t gpa) {
  uint8_t c[96];
  size_t n = 0;
  uint64_t imm[4] = {gpa, pages, PAGE, 0x0123456789abcdefull};
  const uint8_t op[4] = {0xbe, 0xb9, 0xba, 0xb8};
  for (int i = 0; i < 4; i++) {
    c[n++] = 0x48;
    c[n++] = op[i];
    memcpy(c + n, &imm[i], 8);
    n += 8;
  }
  const uint8_t loop[] = {0x48, 0x89, 0x06, 0x48, 0x01, 0xd6, 0x48, 0x83, 0xe9, 0x01, 0x75, 0xf4,
                          0xba, SYNC_PORT, 0, 0, 0, 0xb8, 1, 0, 0, 0, 0xef, 0xf4, 0xeb, 0xfd};
  memcpy(c + n, loop, sizeof loop);
  n += sizeof loop;
  memcpy(boot + at, c, n);
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, uint8_t l, uint8_t db) {
  memset(s, 0, sizeof *s);
  s->limit = 0xffffffff;
  s->selector = sel;
  s->type = type;
  s->present = 1;
  s->s = 1;
  s->l = l;
  s->db = db;
  s->g = 1;
}

static void setup_vcpu(int i, uint64_t gpa) {
  struct vcpu *v = &vcpus[i];
  v->fd = ioctl(vm, KVM_CREATE_VCPU, i);
  check(v->fd >= 0, "KVM_CREATE_VCPU");
  v->run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
  check(v->run != MAP_FAILED, "mmap kvm_run");
  uint64_t code = CODE0 + i * AREA;
  write_code(code, gpa);
  struct kvm_sregs sr;
  check(ioctl(v->fd, KVM_GET_SREGS, &sr) == 0, "KVM_GET_SREGS");
  seg(&sr.cs, 0x08, 0xb, 1, 0);
  seg(&sr.ds, 0x10, 0x3, 0, 1);
  sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
  memset(&sr.tr, 0, sizeof sr.tr);
  sr.tr.base = TSS;
  sr.tr.limit = 0x67;
  sr.tr.selector = 0x18;
  sr.tr.type = 0xb;
  sr.tr.present = 1;
  memset(&sr.ldt, 0, sizeof sr.ldt);
  sr.ldt.unusable = 1;
  sr.gdt.base = GDT;
  sr.gdt.limit = 39;
  sr.idt.base = 0x45000;
  sr.idt.limit = 0xfff;
  sr.cr0 = 0x80050033;  // PE MP ET NE WP AM PG
  sr.cr3 = PML4;
  sr.cr4 = 0x20;        // PAE
  sr.efer = 0x500;      // LME LMA
  check(ioctl(v->fd, KVM_SET_SREGS, &sr) == 0, "KVM_SET_SREGS");
  struct kvm_regs r;
  memset(&r, 0, sizeof r);
  r.rip = code;
  r.rsp = code + AREA;
  r.rflags = 2;
  check(ioctl(v->fd, KVM_SET_REGS, &r) == 0, "KVM_SET_REGS");
}

static void *vcpu_main(void *arg) {
  struct vcpu *v = arg;
  if (v->pcpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(v->pcpu, &set);
    errno = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    check(errno == 0, "pthread_setaffinity_np");
  }
  atomic_fetch_add(&ready, 1);
  while (!atomic_load(&go)) {
  }
  for (;;) {
    int r = ioctl(v->fd, KVM_RUN, 0);
    if (r < 0 && errno == EINTR) continue;
    check(r == 0, "KVM_RUN");
    if (v->run->exit_reason == KVM_EXIT_IO && v->run->io.port == SYNC_PORT) return NULL;
    die("vCPU exit %u instead of the sync io exit", v->run->exit_reason);
  }
}

static void *reader_main(void *arg) {
  struct vcpu *v = arg;
  struct pollfd p[2] = {{v->uffd, POLLIN, 0}, {v->pipe[0], POLLIN, 0}};
  for (;;) {
    int n = poll(p, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    check(n > 0, "poll");
    if (p[1].revents) return NULL;
    struct uffd_msg msg;
    ssize_t got = read(v->uffd, &msg, sizeof msg);
    if (got < 0 && errno == EAGAIN) continue;
    check(got == sizeof msg, "read uffd");
    if (msg.event != UFFD_EVENT_PAGEFAULT) continue;
    uint64_t addr = msg.arg.pagefault.address & ~(PAGE - 1);
    int r;
    if (mode == MISSING) {
      struct uffdio_copy c = {.dst = addr, .src = (uint64_t)(uintptr_t)prototype, .len = PAGE, .mode = 0};
      r = ioctl(v->uffd, UFFDIO_COPY, &c);
    } else {
      struct uffdio_continue c = {.range = {.start = addr, .len = PAGE}, .mode = 0};
      r = ioctl(v->uffd, UFFDIO_CONTINUE, &c);
    }
    check(r == 0 || errno == EEXIST, mode == MISSING ? "UFFDIO_COPY" : "UFFDIO_CONTINUE");
  }
}

static void setup_uffd(int i) {
  struct vcpu *v = &vcpus[i];
  v->uffd = (int)syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  check(v->uffd >= 0, "userfaultfd");
  struct uffdio_api api = {.api = UFFD_API, .features = 0};
  check(ioctl(v->uffd, UFFDIO_API, &api) == 0, "UFFDIO_API");
  struct uffdio_register reg = {
      .range = {.start = (uint64_t)(uintptr_t)(region + i * pages * PAGE), .len = pages * PAGE},
      .mode = mode == MISSING ? UFFDIO_REGISTER_MODE_MISSING : UFFDIO_REGISTER_MODE_MINOR};
  check(ioctl(v->uffd, UFFDIO_REGISTER, &reg) == 0, "UFFDIO_REGISTER");
  check(pipe2(v->pipe, O_CLOEXEC | O_NONBLOCK) == 0, "pipe2");
  check(pthread_create(&v->reader, NULL, reader_main, v) == 0, "pthread_create");
}

int main(int argc, char **argv) {
  int nr = 1;
  const char *m = "MISSING";
  const char *pin = NULL;
  pages = 20000;
  for (int c; (c = getopt(argc, argv, "v:p:u:c:")) != -1;) {
    if (c == 'v') nr = atoi(optarg);
    else if (c == 'p') pages = strtoull(optarg, NULL, 0);
    else if (c == 'u') m = optarg;
    else if (c == 'c') pin = optarg;
    else die("usage: demand-paging-ref -v vcpus -p pages -u MISSING|MINOR|NONE [-c pcpus]");
  }
  if (nr < 1 || nr > MAX_VCPUS || pages == 0) die("bad -v or -p");
  if (!strcmp(m, "MISSING")) mode = MISSING;
  else if (!strcmp(m, "MINOR")) mode = MINOR;
  else if (!strcmp(m, "NONE")) mode = NONE;
  else die("bad -u %s", m);
  memset(prototype, 0xab, sizeof prototype);
  for (int i = 0; i < MAX_VCPUS; i++) vcpus[i].pcpu = -1;
  for (int i = 0; pin != NULL && *pin != '\0'; i++) {
    if (i > nr) die("-c lists more pCPUs than vCPUs plus the main thread");
    char *end;
    int pcpu = (int)strtol(pin, &end, 10);
    if (end == pin || (*end != ',' && *end != '\0')) die("bad -c");
    pin = *end == ',' ? end + 1 : end;
    if (i < nr) {
      vcpus[i].pcpu = pcpu;
    } else {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(pcpu, &set);
      errno = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
      check(errno == 0, "pthread_setaffinity_np");
    }
  }

  kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  check(kvm >= 0, "open /dev/kvm");
  vm = ioctl(kvm, KVM_CREATE_VM, 0);
  check(vm >= 0, "KVM_CREATE_VM");
  run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  check(run_size > 0, "KVM_GET_VCPU_MMAP_SIZE");

  boot = mmap(NULL, BOOT_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  check(boot != MAP_FAILED, "mmap boot");
  build_boot();
  struct kvm_userspace_memory_region slot0 = {0, 0, 0, BOOT_SIZE, (uint64_t)(uintptr_t)boot};
  check(ioctl(vm, KVM_SET_USER_MEMORY_REGION, &slot0) == 0, "KVM_SET_USER_MEMORY_REGION 0");

  region_size = (uint64_t)nr * pages * PAGE;
  region_gpa = (IDENTITY_END - region_size - PAGE) & ~(PAGE - 1);
  if (mode == MINOR) {
    int memfd = memfd_create("demand-paging-ref", MFD_CLOEXEC);
    check(memfd >= 0, "memfd_create");
    check(ftruncate(memfd, (off_t)region_size) == 0, "ftruncate");
    region = mmap(NULL, region_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    uint8_t *alias = mmap(NULL, region_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    check(region != MAP_FAILED && alias != MAP_FAILED, "mmap memfd");
    memset(alias, 0xab, region_size);  // the page cache the MINOR faults find
    munmap(alias, region_size);
    close(memfd);
  } else {
    region = mmap(NULL, region_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    check(region != MAP_FAILED, "mmap region");
  }
  struct kvm_userspace_memory_region slot1 = {1, 0, region_gpa, region_size, (uint64_t)(uintptr_t)region};
  check(ioctl(vm, KVM_SET_USER_MEMORY_REGION, &slot1) == 0, "KVM_SET_USER_MEMORY_REGION 1");

  for (int i = 0; i < nr; i++) {
    setup_vcpu(i, region_gpa + (uint64_t)i * pages * PAGE);
    if (mode != NONE) setup_uffd(i);
  }
  for (int i = 0; i < nr; i++) check(pthread_create(&vcpus[i].thread, NULL, vcpu_main, &vcpus[i]) == 0, "pthread_create");
  while (atomic_load(&ready) < nr) {
  }
  uint64_t start = now_ns();
  atomic_store(&go, 1);
  for (int i = 0; i < nr; i++) pthread_join(vcpus[i].thread, NULL);
  uint64_t elapsed = now_ns() - start;
  if (mode != NONE) {
    for (int i = 0; i < nr; i++) {
      check(write(vcpus[i].pipe[1], "x", 1) == 1, "write pipe");
      pthread_join(vcpus[i].reader, NULL);
      // Closing unregisters the range: a fault from here on (the check below, or a KVM worker running
      // in this mm) no longer waits for a reader that is gone.
      close(vcpus[i].uffd);
      close(vcpus[i].pipe[0]);
      close(vcpus[i].pipe[1]);
    }
  }
  // Every page carries the guest's value and, behind it, what the handler copied.
  for (uint64_t p = 0; p < region_size / PAGE; p++) {
    uint64_t v;
    memcpy(&v, region + p * PAGE, 8);
    if (v != 0x0123456789abcdefull) die("page %llu was not written by the guest", (unsigned long long)p);
    if (mode != NONE && region[p * PAGE + 8] != 0xab) die("page %llu lacks the handler's bytes", (unsigned long long)p);
  }
  double seconds = (double)elapsed / 1e9;
  printf("{\"vcpus\":%d,\"pages_per_vcpu\":%llu,\"mode\":\"%s\",\"elapsed_ns\":%llu,\"overall_rate\":%.1f}\n", nr,
         (unsigned long long)pages, m, (unsigned long long)elapsed, (double)pages * nr / seconds);
  return 0;
}
