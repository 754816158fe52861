/* par.c -- crnn_par_run2 (see crnn.h): two jobs at once, the second on one
 * worker thread per process; the kernels never start threads themselves.
 * The worker is started on first use. Between calls it waits for the next
 * job spinning for up to SPIN_NS (a kernel call hands it several jobs in a
 * row: a time loop, then its products, ...), then blocked on a condition
 * variable, so that it leaves the core to others once crnn is done; the
 * caller waits for the worker's half the same way. One caller at a time: a
 * call that finds the worker in use, in a process forked while it was (whose
 * worker does not exist), or without POSIX threads runs both jobs on the
 * calling thread, which gives the same results. */
#if defined(__linux__)
#define _GNU_SOURCE  /* pthread_setname_np */
#elif defined(__unix__) || defined(__APPLE__)
#define _POSIX_C_SOURCE 200809L
#endif

#include <stddef.h>

#include "crnn.h"

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

/* 1 ms: a worker that has gone to sleep on the condition variable takes
 * 0.1-0.4 ms to run again on this project's VMs (its vCPU halts), the caller
 * waiting for it meanwhile; if the caller went to sleep too while waiting
 * for the worker's half, the next job finds the worker asleep again, and
 * every handoff of a call pays it. With 50 us (0.4.8) a third of S's
 * float32 forward + backward calls at two threads, each after 0.3 s idle
 * and a warm-up call, took 14-16 ms against 7-8 with 1 ms, 19-25 of their
 * 28 handoffs through the condition variable against none (4 runs of 20 s
 * alternating; measured with timers in par.c, 2026-11-27). Medians of whole
 * calls, 50 us -> 1 ms: S 8.11 -> 6.62 ms (float32), 13.45 -> 12.87
 * (float64); LAT 4.55 -> 3.33, 8.39 -> 6.36 (`python bench/builds_ab.py
 * OLD . S LAT --threads 2 --pause 0.3 --calls 7 --turns 8 --rounds 6`).
 * OpenBLAS's idle threads spin for about 0.1 s. */
#define SPIN_NS 1000000

static pthread_mutex_t busy = PTHREAD_MUTEX_INITIALIZER;  /* held by the one caller */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;    /* guards job, arg, state */
static pthread_cond_t posted = PTHREAD_COND_INITIALIZER, done = PTHREAD_COND_INITIALIZER;
static crnn_job_fn job_fn;
static void *job_arg;
enum { IDLE, POSTED, DONE };  /* DONE until the next job is posted */
static int state;         /* written under mu; read without it while spinning */
static pid_t worker_pid;  /* the process whose worker exists; 0: none yet */

#if defined(__GNUC__)
#define STORE(p, v) __atomic_store_n(p, v, __ATOMIC_RELEASE)

/* Whether state became `want` within SPIN_NS. */
static int spin_until(int want)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        for (int i = 0; i < 64; ++i) {
            if (__atomic_load_n(&state, __ATOMIC_ACQUIRE) == want) return 1;
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) > SPIN_NS) return 0;
    }
}
#else  /* no atomics: straight to the condition variable */
#define STORE(p, v) (*(p) = (v))
static int spin_until(int want)
{
    (void)want;
    return 0;
}
#endif

/* Wait until state is `want`: spinning a while, then on cv. */
static void wait_for(int want, pthread_cond_t *cv)
{
    if (spin_until(want)) return;
    pthread_mutex_lock(&mu);
    while (state != want) pthread_cond_wait(cv, &mu);
    pthread_mutex_unlock(&mu);
}

static void set_state(int v, pthread_cond_t *cv)
{
    pthread_mutex_lock(&mu);
    STORE(&state, v);
    pthread_cond_signal(cv);
    pthread_mutex_unlock(&mu);
}

static void *worker(void *unused)
{
    (void)unused;
#if defined(__linux__)
    pthread_setname_np(pthread_self(), "crnn-par");  /* as top and /proc show it */
#endif
    for (;;) {
        wait_for(POSTED, &posted);
        job_fn(job_arg);
        set_state(DONE, &done);
    }
    return NULL;
}

/* Start this process's worker, with every signal blocked (signals are for
 * the interpreter's threads). Called with busy held; 0 on success. */
static int start_worker(void)
{
    /* after a fork the state is the parent's and the worker is gone */
    pthread_mutex_init(&mu, NULL);
    pthread_cond_init(&posted, NULL);
    pthread_cond_init(&done, NULL);
    STORE(&state, IDLE);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_t th;
    int rc = pthread_attr_init(&attr);
    if (rc == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        rc = pthread_create(&th, &attr, worker, NULL);
        pthread_attr_destroy(&attr);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc == 0) worker_pid = getpid();
    return rc;
}

void crnn_par_run2(crnn_job_fn job, void *arg0, void *arg1)
{
    if (pthread_mutex_trylock(&busy) != 0) {
        job(arg0);
        job(arg1);
        return;
    }
    if (worker_pid != getpid() && start_worker() != 0) {
        pthread_mutex_unlock(&busy);
        job(arg0);
        job(arg1);
        return;
    }
    job_fn = job;  /* the worker reads them only after seeing POSTED */
    job_arg = arg1;
    set_state(POSTED, &posted);
    job(arg0);
    wait_for(DONE, &done);
    pthread_mutex_unlock(&busy);
}

#else

void crnn_par_run2(crnn_job_fn job, void *arg0, void *arg1)
{
    job(arg0);
    job(arg1);
}

#endif
