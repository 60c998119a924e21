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
 *     permissions naming a guest are kept and no domain ever "dies" (only
 *     RELEASE ends a guest);
 *   - dom0's xenbus page is zeroed memory nobody else sees: dom0 talks over
 *     the Unix socket, as tools on a real host do.
 *
 * Guests.  When the launcher passes a state directory in
 * XENSTORE_REFERENCE_STATE_DIR, another process can play an unprivileged
 * guest there (xenstore/reference/guest.py does), with three kinds of file
 * standing for what Xen would share between the daemon and the guest:
 *
 *   ring-<domid>  the guest's 4096-byte ring page (struct
 *                 xenstore_domain_interface: req[1024], rsp[1024], then
 *                 req_cons, req_prod, rsp_cons, rsp_prod as u32).  Created
 *                 zeroed and mapped MAP_SHARED when the daemon maps the
 *                 guest's page at INTRODUCE; the guest maps the same file.
 *                 Removed, with port-<domid>, when the daemon unmaps it
 *                 (RELEASE).
 *   port-<domid>  the daemon-side event channel port bound for the guest,
 *                 in decimal.  Written at INTRODUCE, after the ring exists;
 *                 removed at RELEASE, so its absence means "released".
 *   evtchn        a FIFO standing for the event channel device that the
 *                 daemon polls.  A guest that has put a request in its ring
 *                 (or taken replies out of it) writes its port there, as a
 *                 4-byte native-endian number: that wakes the daemon, which
 *                 then serves every ring with pending input or output.
 *
 * The daemon's notifications to a guest go nowhere: the guest watches the
 * ring's indexes instead.  Without a state directory, the event channel is
 * an eventfd nobody writes to and guest pages are private memory, so
 * INTRODUCE and RELEASE still work as control operations.
 *
 * Both daemons serve guests this way: cxenstored maps a guest's page through
 * the grant table and oxenstored by frame number, and both get the file.
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
#include <sys/stat.h>
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

/* A zeroed page nobody else sees: dom0's ring, or a guest's when there is
 * no state directory to share one through. */
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
/* Guest state files (see the top of this file)                        */
/* ------------------------------------------------------------------ */

/* The state directory, or NULL when guests are not wanted. */
static const char *state_dir(void)
{
    const char *dir = getenv("XENSTORE_REFERENCE_STATE_DIR");
    return dir != NULL && *dir != '\0' ? dir : NULL;
}

/* Whether `domid` is a guest that gets files: dom0 talks over the socket
 * and reserved ids are never guests. */
static int is_guest(uint32_t domid)
{
    return domid != 0 && domid < FIRST_RESERVED_DOMID && state_dir() != NULL;
}

/* "<state dir>/<name>-<domid>" (or without "-<domid>" when domid is
 * negative) into buf; 0 on success, -1 (ENAMETOOLONG) if it does not fit. */
static int state_path(char *buf, size_t size, const char *name, long domid)
{
    int len = domid < 0 ? snprintf(buf, size, "%s/%s", state_dir(), name)
                        : snprintf(buf, size, "%s/%s-%ld", state_dir(), name, domid);
    if (len < 0 || (size_t)len >= size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

/* Per guest: the port the daemon bound for it (0: none) and the address of
 * its ring as the daemon mapped it (NULL: none), so that unbinding and
 * unmapping, which are told only a port or an address, know which files
 * to remove. */
static unsigned int guest_port[FIRST_RESERVED_DOMID];
static void *guest_ring[FIRST_RESERVED_DOMID];
static unsigned int rings_mapped; /* how many guest_ring entries are set */

/* Map a fresh zeroed ring file for `domid`, shared with whoever opens the
 * file.  A new file (written under a temporary name, then renamed) rather
 * than the old one truncated: a guest still holding the ring of an earlier
 * introduction keeps that dead page and cannot be confused by this one. */
static void *map_guest_ring(uint32_t domid)
{
    char path[4096], partial[4096 + 16];
    void *page;
    int fd;

    if (state_path(path, sizeof path, "ring", domid) != 0)
        return NULL;
    snprintf(partial, sizeof partial, "%s.partial", path);
    fd = open(partial, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return NULL;
    if (ftruncate(fd, PAGE_BYTES) != 0) {
        close(fd);
        unlink(partial);
        return NULL;
    }
    page = mmap(NULL, PAGE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (page == MAP_FAILED) {
        unlink(partial);
        return NULL;
    }
    if (rename(partial, path) != 0) {
        munmap(page, PAGE_BYTES);
        unlink(partial);
        return NULL;
    }
    if (guest_ring[domid] == NULL)
        rings_mapped++;
    guest_ring[domid] = page;
    return page;
}

static void forget_guest_port(unsigned int port);

/* Whether `page` is a guest's ring; if so, the domain is gone (cxenstored
 * has unbound its port just before; oxenstored never unbinds it): forget
 * both and remove both files. */
static void forget_guest_ring(void *page)
{
    char path[4096];
    uint32_t domid;

    if (page == NULL || rings_mapped == 0)
        return;
    for (domid = 1; domid < FIRST_RESERVED_DOMID; domid++) {
        if (guest_ring[domid] != page)
            continue;
        guest_ring[domid] = NULL;
        rings_mapped--;
        if (state_path(path, sizeof path, "ring", domid) == 0)
            unlink(path);
        forget_guest_port(guest_port[domid]);
        return;
    }
}

/* Record the port bound for a guest in port-<domid>, written under a
 * temporary name and renamed so that a reader never sees half of it. */
static int publish_guest_port(uint32_t domid, unsigned int port)
{
    char path[4096], partial[4096 + 16], text[16];
    int fd, len, ok;

    if (state_path(path, sizeof path, "port", domid) != 0)
        return -1;
    snprintf(partial, sizeof partial, "%s.partial", path);
    fd = open(partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    len = snprintf(text, sizeof text, "%u\n", port);
    ok = write(fd, text, (size_t)len) == len;
    if (close(fd) != 0)
        ok = 0;
    if (!ok || rename(partial, path) != 0) {
        unlink(partial);
        errno = EIO;
        return -1;
    }
    guest_port[domid] = port;
    return 0;
}

/* Whether `port` is a guest's; if so, forget it and remove its port file. */
static void forget_guest_port(unsigned int port)
{
    char path[4096];
    uint32_t domid;

    if (port == 0)
        return;
    for (domid = 1; domid < FIRST_RESERVED_DOMID; domid++) {
        if (guest_port[domid] != port)
            continue;
        guest_port[domid] = 0;
        if (state_path(path, sizeof path, "port", domid) == 0)
            unlink(path);
        return;
    }
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
 * through libxenctrl: the same ring file as cxenstored's grant mapping
 * when there is a state directory, else private memory, so that INTRODUCE
 * succeeds as a control operation. */
EXPORT void *xc_map_foreign_range(void *xch, uint32_t domid, int size, int prot,
                                  unsigned long mfn)
{
    (void)xch;
    (void)prot;
    (void)mfn;
    if (is_guest(domid) && size == PAGE_BYTES)
        return map_guest_ring(domid);
    return private_page(size > 0 ? (size_t)size : PAGE_BYTES);
}

/* ------------------------------------------------------------------ */
/* libxenevtchn: event channels                                       */
/* ------------------------------------------------------------------ */

/* The daemons poll the event channel file descriptor in their main loop,
 * next to their sockets, so it has to be a real descriptor.  With a state
 * directory it is the "evtchn" FIFO there, which guests write their port to
 * (see the top of this file); it is opened read-write so that it never
 * reports end of file when a guest closes its end.  Without one, it is an
 * eventfd that no one signals: "no guest ever notifies".  Ports are handed
 * out from one counter so that each bind returns a distinct, plausible
 * number (and a guest's port names one guest only). */
struct evtchn_stand_in {
    int fd;
    int is_fifo;
    int virq_port;
};

static unsigned int next_port = DOM0_XENBUS_PORT + 1;

static int event_fifo(void)
{
    char path[4096];

    if (state_path(path, sizeof path, "evtchn", -1) != 0)
        return -1;
    if (mkfifo(path, 0600) != 0 && errno != EEXIST)
        return -1;
    return open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
}

static void *evtchn_new(void)
{
    struct evtchn_stand_in *xce = calloc(1, sizeof *xce);
    if (xce == NULL)
        return NULL;
    xce->is_fifo = state_dir() != NULL;
    xce->fd = xce->is_fifo ? event_fifo() : eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (xce->fd < 0) {
        free(xce);
        return NULL;
    }
    xce->virq_port = -1;
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
    xce->virq_port = (int)next_port++;
    return xce->virq_port;
}

/* Binding to dom0's xenbus port at start-up, and to a guest's port on
 * INTRODUCE: hand out a fresh local port, and tell a guest which one in
 * port-<domid> (the daemon binds after it has mapped the ring, so a guest
 * that sees this file finds its ring too).  If the file cannot be written,
 * the bind fails and so does the INTRODUCE, with that errno. */
EXPORT int xenevtchn_bind_interdomain(void *handle, uint32_t domid, unsigned int remote_port)
{
    unsigned int port = next_port++;
    (void)handle;
    (void)remote_port;
    if (is_guest(domid)) {
        if (guest_port[domid] != 0)
            forget_guest_port(guest_port[domid]);
        if (publish_guest_port(domid, port) != 0)
            return -1;
    }
    return (int)port;
}

/* RELEASE of a guest (or a second INTRODUCE of a live one, which rebinds)
 * gives its port back: remove its port file.  Ports are never reused. */
EXPORT int xenevtchn_unbind(void *handle, unsigned int port)
{
    (void)handle;
    forget_guest_port(port);
    return 0;
}

/* Kicking a guest: there is no event to deliver; guests watch their ring's
 * indexes instead. */
EXPORT int xenevtchn_notify(void *handle, unsigned int port)
{
    (void)handle;
    (void)port;
    return 0;
}

/* Called when the descriptor is readable.  Take everything pending, so
 * that one wake-up serves every poke so far (the daemon then looks at all
 * its rings anyway), and name the last port a guest wrote.  The daemons
 * exit if this fails, so anything else (a spurious wake-up, the eventfd)
 * names the VIRQ port: the daemon then merely re-checks its domains,
 * which all still exist. */
EXPORT int xenevtchn_pending(void *handle)
{
    struct evtchn_stand_in *xce = handle;
    uint32_t ports[64];
    uint64_t count;
    ssize_t got;
    int port = xce->virq_port >= 0 ? xce->virq_port : 0;

    if (!xce->is_fifo) {
        if (read(xce->fd, &count, sizeof count) < 0) {
            /* Nothing was pending; the answer is harmless either way. */
        }
        return port;
    }
    /* Guests write whole 4-byte ports (writes under PIPE_BUF bytes are
     * atomic), so reads of a multiple of 4 bytes stay aligned. */
    while ((got = read(xce->fd, ports, sizeof ports)) > 0) {
        if (got >= (ssize_t)sizeof ports[0])
            port = (int)ports[got / sizeof ports[0] - 1];
        if (got < (ssize_t)sizeof ports)
            break;
    }
    return port;
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
 * grant.  With a state directory that is the ring-<domid> file, which a
 * guest process maps too; otherwise private memory, so that INTRODUCE
 * still succeeds as a control operation. */
EXPORT void *xengnttab_map_grant_ref(void *xgt, uint32_t domid, uint32_t ref, int prot)
{
    (void)xgt;
    (void)ref;
    (void)prot;
    if (is_guest(domid))
        return map_guest_ring(domid);
    return private_page(PAGE_BYTES);
}

/* RELEASE of a guest unmaps its ring (munmap, below, removes its files). */
EXPORT int xengnttab_unmap(void *xgt, void *start_address, uint32_t count)
{
    (void)xgt;
    return munmap(start_address, (size_t)(count ? count : 1) * PAGE_BYTES);
}

/* oxenstored unmaps a released guest's page with a plain munmap, and never
 * unbinds its port, so this is where both daemons say a guest is gone:
 * unmapping a guest's ring removes its ring and port files, which is how a
 * guest process learns it was released.  Every other munmap passes through
 * (the C library's own unmapping inside malloc does not come here). */
EXPORT int munmap(void *addr, size_t length)
{
    static int (*real_munmap)(void *, size_t);
    if (real_munmap == NULL)
        real_munmap = next_symbol("munmap");
    forget_guest_ring(addr);
    return real_munmap(addr, length);
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
