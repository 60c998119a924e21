/*
 * Hypervisor stand-ins for the reference XenStore daemons.
 *
 * The Xen 4.17 daemons shipped by Debian (C "xenstored" and OCaml
 * "oxenstored") refuse to start unless they can reach the hypervisor: they
 * open libxenctrl, the event channel and grant table devices, and dom0's
 * "xenbus" page and port under /proc/xen.  Built as a shared object and put
 * in LD_PRELOAD, this file defines those library entry points itself, so the
 * dynamic linker binds the daemons to these definitions instead of the real
 * libraries, and the daemons come up on a plain Linux host and serve their
 * Unix socket.  The launcher (launcher.py beside this file) compiles it.
 *
 * What the stand-ins pretend:
 *   - every domain id below DOMID_FIRST_RESERVED exists and is running, so
 *     permissions naming a guest are kept and no domain ever "dies";
 *   - event channels never fire: the file descriptor handed out for polling
 *     is an eventfd nobody writes to;
 *   - shared pages (dom0's xenbus page, a guest's ring after INTRODUCE) are
 *     zeroed memory that no other process sees, so INTRODUCE and RELEASE
 *     work as control operations but no guest can actually talk over a
 *     ring (dom0 talks over the Unix socket, as tools on a real host do).
 *
 * Room for later: guest rings.  A future version can back the pages with
 * files and the event channel with a FIFO inside the per-instance state
 * directory that the launcher already passes in XENSTORE_REFERENCE_STATE_DIR,
 * so that another process can play a guest.  Nothing here uses it yet.
 *
 * One addition that has nothing to do with Xen: if XENSTORE_REFERENCE_READY_FD
 * names a file descriptor, the first poll()/select() call (which is the
 * daemon entering its main loop, after its socket listens and dom0 is set
 * up) writes "ready\n" to it and closes it.  oxenstored has no other
 * readiness signal; see launcher.py.
 *
 * Only the signatures matter to the linker; the Xen types are opaque here
 * and pointer arguments are declared as void * so that no Xen headers are
 * needed to build this file.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/* Domain ids from here on are reserved by Xen (DOMID_SELF, DOMID_IO, ...). */
#define FIRST_RESERVED_DOMID 0x7ff0u
/* The event channel port that /proc/xen/xsd_port reports for dom0. */
#define DOM0_XENBUS_PORT 1
#define PAGE_BYTES 4096

/* ------------------------------------------------------------------ */
/* Helpers                                                            */
/* ------------------------------------------------------------------ */

/* Look up the next definition of a libc symbol we wrap.  Failure means a
 * broken libc; there is nothing sensible to do but stop. */
static void *next_symbol(const char *name)
{
    void *sym = dlsym(RTLD_NEXT, name);
    if (sym == NULL) {
        fprintf(stderr, "reference shim: libc has no %s\n", name);
        abort();
    }
    return sym;
}

/* A zeroed page nobody else sees: what a "mapped" ring is for now. */
static void *private_page(size_t bytes)
{
    void *page = mmap(NULL, bytes ? bytes : PAGE_BYTES, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return page == MAP_FAILED ? NULL : page;
}

/* An anonymous in-memory file holding `bytes` of data (or zeros when data
 * is NULL), positioned at its start: what the /proc/xen files become. */
static int memory_file(const char *name, const void *data, size_t bytes)
{
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    if (data != NULL) {
        if (write(fd, data, bytes) != (ssize_t)bytes || lseek(fd, 0, SEEK_SET) != 0) {
            close(fd);
            return -1;
        }
    } else if (ftruncate(fd, (off_t)bytes) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ------------------------------------------------------------------ */
/* Readiness: the first wait for events means start-up is over.       */
/* ------------------------------------------------------------------ */

static void announce_ready(void)
{
    static int done;
    const char *value;
    char *end;
    long fd;

    if (done)
        return;
    done = 1;
    value = getenv("XENSTORE_REFERENCE_READY_FD");
    if (value == NULL || *value == '\0')
        return;
    fd = strtol(value, &end, 10);
    /* Forget it so that programs the daemon might run do not write too. */
    unsetenv("XENSTORE_REFERENCE_READY_FD");
    if (*end != '\0' || fd < 0)
        return;
    if (write((int)fd, "ready\n", 6) != 6) {
        /* The launcher gave up waiting; nobody to tell. */
    }
    close((int)fd);
}

EXPORT int poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    static int (*real_poll)(struct pollfd *, nfds_t, int);
    if (real_poll == NULL)
        real_poll = next_symbol("poll");
    announce_ready();
    return real_poll(fds, nfds, timeout);
}

EXPORT int select(int nfds, fd_set *readfds, fd_set *writefds, fd_set *exceptfds,
                  struct timeval *timeout)
{
    static int (*real_select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
    if (real_select == NULL)
        real_select = next_symbol("select");
    announce_ready();
    return real_select(nfds, readfds, writefds, exceptfds, timeout);
}

/* ------------------------------------------------------------------ */
/* libxenctrl: the hypercall interface                                */
/* ------------------------------------------------------------------ */

/* Both daemons open a libxenctrl handle first and give up if they cannot
 * (the real one needs /dev/xen/privcmd).  Any non-NULL pointer will do, as
 * only these stand-ins ever look at it. */
static char xenctrl_handle;

EXPORT void *xc_interface_open(void *logger, void *dombuild_logger, unsigned int flags)
{
    (void)logger;
    (void)dombuild_logger;
    (void)flags;
    return &xenctrl_handle;
}

/* Called on the way out; there is nothing to release. */
EXPORT int xc_interface_close(void *xch)
{
    (void)xch;
    return 0;
}

/* xenstored asks, one domain at a time, whether a domain still exists and
 * whether it is dying or shut down (when a guest is introduced, when
 * permissions name a domain, after the domain-exception VIRQ).  We answer
 * "it exists and is running" for every ordinary domain id, as a toolstack
 * would see it for the guests it manages: were the answer "no such domain",
 * SET_PERMS naming a guest would fail with ENOENT.  The record is
 * xc_dominfo_t: domid and ssidref (u32 each), then a word of state bits
 * (dying, crashed, shutdown, ...), then counters.  Zeroing its first 64
 * bytes (well within the structure) clears every state bit. */
EXPORT int xc_domain_getinfo(void *xch, uint32_t first_domid, unsigned int max_doms,
                             void *info)
{
    (void)xch;
    if (max_doms == 0 || first_domid >= FIRST_RESERVED_DOMID)
        return 0;
    memset(info, 0, 64);
    memcpy(info, &first_domid, sizeof first_domid);
    return 1;
}

/* oxenstored's variant of the same question.  The record is the domctl
 * getdomaininfo structure: a u16 domain id, padding, a u32 of flags (dying,
 * shutdown, ...), then 64-bit counters; again the first 64 bytes lie within
 * it.  Only one record is returned per call, since the full record size
 * depends on headers we do not have: a caller that wants more simply asks
 * again from the next id, and a caller asking about one domain (which is
 * what oxenstored does) gets exactly that one. */
EXPORT int xc_domain_getinfolist(void *xch, uint32_t first_domid, unsigned int max_doms,
                                 void *info)
{
    uint16_t domid16 = (uint16_t)first_domid;

    (void)xch;
    if (max_doms == 0 || first_domid >= FIRST_RESERVED_DOMID)
        return 0;
    memset(info, 0, 64);
    memcpy(info, &domid16, sizeof domid16);
    return 1;
}

/* oxenstored maps an introduced guest's ring page by machine frame number
 * through libxenctrl.  Until guest rings exist, hand it private memory so
 * that INTRODUCE succeeds as a control operation. */
EXPORT void *xc_map_foreign_range(void *xch, uint32_t domid, int size, int prot,
                                  unsigned long mfn)
{
    (void)xch;
    (void)domid;
    (void)prot;
    (void)mfn;
    return private_page(size > 0 ? (size_t)size : PAGE_BYTES);
}

/* ------------------------------------------------------------------ */
/* libxenevtchn: event channels                                       */
/* ------------------------------------------------------------------ */

/* The daemons poll the event channel file descriptor in their main loop,
 * next to their sockets, so it has to be a real descriptor.  An eventfd
 * that no one signals never becomes readable, which is exactly "no guest
 * ever notifies".  Ports are handed out from a counter so that each bind
 * returns a distinct, plausible number. */
struct evtchn_stand_in {
    int fd;
    int virq_port;
    unsigned int next_port;
};

static void *evtchn_new(void)
{
    struct evtchn_stand_in *xce = calloc(1, sizeof *xce);
    if (xce == NULL)
        return NULL;
    xce->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (xce->fd < 0) {
        free(xce);
        return NULL;
    }
    xce->virq_port = -1;
    xce->next_port = DOM0_XENBUS_PORT + 1;
    return xce;
}

EXPORT void *xenevtchn_open(void *logger, unsigned int flags)
{
    (void)logger;
    (void)flags;
    return evtchn_new();
}

/* Used by xenstored to inherit the device across a live update; we just
 * start afresh. */
EXPORT void *xenevtchn_fdopen(void *logger, int fd, unsigned int flags)
{
    (void)logger;
    (void)fd;
    (void)flags;
    return evtchn_new();
}

/* Closing a handle (oxenstored links this call). */
EXPORT int xenevtchn_close(void *handle)
{
    struct evtchn_stand_in *xce = handle;
    if (xce != NULL) {
        close(xce->fd);
        free(xce);
    }
    return 0;
}

/* The descriptor the main loop polls for notifications. */
EXPORT int xenevtchn_fd(void *handle)
{
    return ((struct evtchn_stand_in *)handle)->fd;
}

/* Both daemons bind VIRQ_DOM_EXC (the "a domain changed state" interrupt)
 * at start-up and refuse to run without it. */
EXPORT int xenevtchn_bind_virq(void *handle, unsigned int virq)
{
    struct evtchn_stand_in *xce = handle;
    (void)virq;
    xce->virq_port = (int)xce->next_port++;
    return xce->virq_port;
}

/* Binding to dom0's xenbus port at start-up, and to a guest's port on
 * INTRODUCE: hand out a fresh local port. */
EXPORT int xenevtchn_bind_interdomain(void *handle, uint32_t domid, unsigned int remote_port)
{
    struct evtchn_stand_in *xce = handle;
    (void)domid;
    (void)remote_port;
    return (int)xce->next_port++;
}

/* RELEASE of a guest gives its port back; ports are never reused here. */
EXPORT int xenevtchn_unbind(void *handle, unsigned int port)
{
    (void)handle;
    (void)port;
    return 0;
}

/* Kicking the other end of a channel: there is nobody to kick. */
EXPORT int xenevtchn_notify(void *handle, unsigned int port)
{
    (void)handle;
    (void)port;
    return 0;
}

/* Called only when the descriptor is readable, which ours never is.  The
 * daemons exit if this fails, so should it ever be called, drain the
 * eventfd and name the VIRQ port: the daemon then merely re-checks its
 * domains, which all still exist. */
EXPORT int xenevtchn_pending(void *handle)
{
    struct evtchn_stand_in *xce = handle;
    uint64_t count;
    if (read(xce->fd, &count, sizeof count) < 0) {
        /* Nothing was pending; the answer below is harmless either way. */
    }
    return xce->virq_port >= 0 ? xce->virq_port : 0;
}

/* Re-enabling a port after xenevtchn_pending reported it: nothing to do. */
EXPORT int xenevtchn_unmask(void *handle, unsigned int port)
{
    (void)handle;
    (void)port;
    return 0;
}

/* ------------------------------------------------------------------ */
/* libxengnttab: grant tables (xenstored maps guest rings this way)   */
/* ------------------------------------------------------------------ */

/* cxenstored opens the grant table device at start-up and exits if it
 * cannot (the real one needs /dev/xen/gntdev); any non-NULL handle will do. */
static char gnttab_handle;

EXPORT void *xengnttab_open(void *logger, unsigned int flags)
{
    (void)logger;
    (void)flags;
    return &gnttab_handle;
}

/* Called on the way out; there is nothing to release. */
EXPORT int xengnttab_close(void *xgt)
{
    (void)xgt;
    return 0;
}

/* cxenstored raises the number of grants it may map to one per domain. */
EXPORT int xengnttab_set_max_grants(void *xgt, uint32_t nr_grants)
{
    (void)xgt;
    (void)nr_grants;
    return 0;
}

/* INTRODUCE of a guest maps its ring through the guest's reserved xenstore
 * grant; until guest rings exist this is private memory, so that INTRODUCE
 * succeeds as a control operation. */
EXPORT void *xengnttab_map_grant_ref(void *xgt, uint32_t domid, uint32_t ref, int prot)
{
    (void)xgt;
    (void)domid;
    (void)ref;
    (void)prot;
    return private_page(PAGE_BYTES);
}

/* RELEASE of a guest unmaps its ring: free the page we handed out. */
EXPORT int xengnttab_unmap(void *xgt, void *start_address, uint32_t count)
{
    (void)xgt;
    return munmap(start_address, (size_t)(count ? count : 1) * PAGE_BYTES);
}

/* ------------------------------------------------------------------ */
/* dom0's xenbus files and resource limits                            */
/* ------------------------------------------------------------------ */

/* At start-up each daemon introduces dom0 by reading its xenbus event
 * channel port from /proc/xen/xsd_port and mapping its ring page from
 * /proc/xen/xsd_kva (oxenstored takes these two paths from its config
 * file).  They exist only in a Xen dom0, so opening them yields in-memory
 * files instead: the port as decimal text with no newline, as the kernel
 * writes it (oxenstored's int_of_string rejects a trailing newline), and a
 * zeroed page that can be mapped shared.  Any other path goes to the real
 * open().  The /dev/xen devices (privcmd, evtchn, gntdev) need no such
 * treatment: only the real libraries replaced above open them. */
static int xenbus_file(const char *path)
{
    char port_text[16];
    int len;

    if (strcmp(path, "/proc/xen/xsd_port") == 0) {
        len = snprintf(port_text, sizeof port_text, "%d", DOM0_XENBUS_PORT);
        return memory_file("xsd_port", port_text, (size_t)len);
    }
    if (strcmp(path, "/proc/xen/xsd_kva") == 0)
        return memory_file("xsd_kva", NULL, PAGE_BYTES);
    return -2; /* not one of ours */
}

static int open_via(const char *name, const char *path, int flags, va_list args)
{
    int (*real_open)(const char *, int, ...) = next_symbol(name);
    mode_t mode = 0;
    int fd;

    if (path != NULL) {
        fd = xenbus_file(path);
        if (fd != -2)
            return fd;
    }
    if (flags & (O_CREAT | O_TMPFILE))
        mode = va_arg(args, mode_t);
    return real_open(path, flags, mode);
}

EXPORT int open(const char *path, int flags, ...)
{
    va_list args;
    int fd;
    va_start(args, flags);
    fd = open_via("open", path, flags, args);
    va_end(args);
    return fd;
}

EXPORT int open64(const char *path, int flags, ...)
{
    va_list args;
    int fd;
    va_start(args, flags);
    fd = open_via("open64", path, flags, args);
    va_end(args);
    return fd;
}

/* oxenstored raises its open-file limit at start-up and dies if that
 * fails, which it does in a container without CAP_SYS_RESOURCE.  Try the
 * real call; if it is refused, settle for the highest limit we may set. */
EXPORT int setrlimit(__rlimit_resource_t resource, const struct rlimit *limit)
{
    static int (*real_setrlimit)(__rlimit_resource_t, const struct rlimit *);
    struct rlimit allowed;

    if (real_setrlimit == NULL)
        real_setrlimit = next_symbol("setrlimit");
    if (real_setrlimit(resource, limit) == 0)
        return 0;
    if (errno != EPERM || getrlimit(resource, &allowed) != 0)
        return -1;
    if (limit->rlim_max < allowed.rlim_max)
        allowed.rlim_max = limit->rlim_max;
    allowed.rlim_cur = limit->rlim_cur < allowed.rlim_max ? limit->rlim_cur : allowed.rlim_max;
    return real_setrlimit(resource, &allowed);
}
