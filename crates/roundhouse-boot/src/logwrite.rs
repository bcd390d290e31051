//! A log writer for the access log at tens of thousands of lines per second: each thread
//! appends its lines to its own buffer, and a buffer reaches the output in one `write` when it
//! fills up or, at the latest, [`BatchedLog::DELAY`] after its first line.
//!
//! Why not a channel to a writer thread (`tracing-appender`'s non-blocking writer, used before):
//! on a 2-core machine the writer thread was a third busy thread next to the two HTTP workers,
//! woken for every few lines, and once 16k lines were queued it made requests wait. p99 latency
//! at 64 connections went from ~6 ms without the access log to 15–26 ms with it
//! (docs/benchmarks.md). Here a line costs an uncontended lock and a copy; the flusher thread
//! wakes at most once per [`BatchedLog::DELAY`] and only when something was logged.
//!
//! Guarantees:
//! - Lines are never dropped and never torn: a buffer only ever holds whole lines (tracing's
//!   formatter hands over one whole line per `write`), and buffers are written one at a time
//!   under the output's lock, so even a pipe shared by threads sees whole lines.
//! - Lines of one thread keep their order. Lines of different threads may be up to
//!   [`BatchedLog::DELAY`] out of order (their timestamps tell).
//! - Warnings and errors are written through at once, after the lines their thread logged
//!   before them, so the last words before a crash are not left in a buffer.
//! - Memory is bounded: a thread whose buffer passes [`BatchedLog::THRESHOLD`] bytes writes it
//!   itself (and so waits for a slow output rather than queueing without limit).
//! - [`FlushGuard`] writes everything that is buffered when dropped (at shutdown).

use std::cell::RefCell;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// One thread's pending lines.
type Buffer = Arc<Mutex<Vec<u8>>>;

struct Shared {
    output: Mutex<Box<dyn Write + Send>>,
    /// Every thread's buffer; buffers of finished threads are dropped after their last flush.
    buffers: Mutex<Vec<Buffer>>,
    /// Set by the first line after a flush; the flusher sleeps while it is clear.
    dirty: AtomicBool,
    stop: AtomicBool,
    flusher: Mutex<Option<std::thread::Thread>>,
}

/// The [`MakeWriter`] to give `tracing_subscriber::fmt().with_writer(…)`.
#[derive(Clone)]
pub struct BatchedLog {
    shared: Arc<Shared>,
}

/// Stops the flusher thread and writes every buffered line when dropped.
pub struct FlushGuard {
    shared: Arc<Shared>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

thread_local! {
    /// This thread's buffer for each live instance (almost always exactly one).
    static LOCAL: RefCell<Vec<(Weak<Shared>, Buffer)>> = const { RefCell::new(Vec::new()) };
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while a lock was held cannot leave a half-appended line behind (appends are one
    // `extend_from_slice`), so the data is still good.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BatchedLog {
    /// A buffer is written once it holds this many bytes (about 300 access-log lines).
    pub const THRESHOLD: usize = 64 * 1024;
    /// The longest a line waits in a buffer.
    pub const DELAY: Duration = Duration::from_millis(50);

    /// Batches lines for `output` and starts the flusher thread.
    pub fn new(output: impl Write + Send + 'static) -> io::Result<(BatchedLog, FlushGuard)> {
        Self::with_delay(output, Self::DELAY)
    }

    fn with_delay(
        output: impl Write + Send + 'static,
        delay: Duration,
    ) -> io::Result<(BatchedLog, FlushGuard)> {
        let shared = Arc::new(Shared {
            output: Mutex::new(Box::new(output)),
            buffers: Mutex::new(Vec::new()),
            dirty: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            flusher: Mutex::new(None),
        });
        let for_thread = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("log-flusher".into())
            .spawn(move || flusher(&for_thread, delay))?;
        *lock(&shared.flusher) = Some(handle.thread().clone());
        let guard = FlushGuard {
            shared: Arc::clone(&shared),
            flusher: Some(handle),
        };
        Ok((BatchedLog { shared }, guard))
    }

    /// This thread's buffer, registered on first use.
    fn local_buffer(&self) -> Buffer {
        LOCAL.with(|table| {
            let mut table = table.borrow_mut();
            if let Some((_, buffer)) = table
                .iter()
                // The Weak keeps the allocation, so the address cannot belong to a new instance.
                .find(|(owner, _)| std::ptr::eq(owner.as_ptr(), Arc::as_ptr(&self.shared)))
            {
                return Arc::clone(buffer);
            }
            table.retain(|(owner, _)| owner.strong_count() > 0);
            let buffer = Buffer::default();
            lock(&self.shared.buffers).push(Arc::clone(&buffer));
            table.push((Arc::downgrade(&self.shared), Arc::clone(&buffer)));
            buffer
        })
    }

    fn append(&self, line: &[u8], write_through: bool) -> io::Result<()> {
        let buffer = self.local_buffer();
        let mut pending = lock(&buffer);
        pending.extend_from_slice(line);
        if write_through || pending.len() >= Self::THRESHOLD {
            // Written while the buffer stays locked, so the flusher cannot write this thread's
            // later lines first.
            return self.shared.write_out(&mut pending);
        }
        if !self.shared.dirty.load(Ordering::Relaxed)
            && !self.shared.dirty.swap(true, Ordering::AcqRel)
            && let Some(flusher) = lock(&self.shared.flusher).as_ref()
        {
            flusher.unpark();
        }
        Ok(())
    }
}

impl Shared {
    fn write_out(&self, pending: &mut Vec<u8>) -> io::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let mut output = lock(&self.output);
        let result = output.write_all(pending).and_then(|()| output.flush());
        // Lines that could not be written are not kept: a broken output would otherwise grow
        // the buffer without bound. tracing-subscriber reports the error.
        pending.clear();
        result
    }

    /// Writes every thread's buffer and forgets the buffers of threads that ended.
    fn flush_all(&self) {
        let buffers: Vec<Buffer> = lock(&self.buffers).clone();
        for buffer in &buffers {
            let _ = self.write_out(&mut lock(buffer));
        }
        // Two references left (the registry's and `buffers`'): its thread has ended.
        lock(&self.buffers).retain(|b| Arc::strong_count(b) > 2 || !lock(b).is_empty());
    }
}

fn flusher(shared: &Shared, delay: Duration) {
    let stopped = || shared.stop.load(Ordering::Acquire);
    loop {
        while !shared.dirty.load(Ordering::Acquire) && !stopped() {
            std::thread::park();
        }
        // Let lines gather: one write per thread per `delay` at most. Writers' unparks end the
        // wait early; only the guard's stop cuts it short (and the guard then flushes).
        let deadline = Instant::now() + delay;
        while !stopped() && Instant::now() < deadline {
            std::thread::park_timeout(deadline.saturating_duration_since(Instant::now()));
        }
        if stopped() {
            return;
        }
        shared.dirty.store(false, Ordering::Release);
        shared.flush_all();
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(handle) = self.flusher.take() {
            handle.thread().unpark();
            let _ = handle.join();
        }
        self.shared.flush_all();
    }
}

/// What [`BatchedLog`] hands tracing for one event.
pub struct LineWriter<'a> {
    log: &'a BatchedLog,
    write_through: bool,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.log.append(line, self.write_through)?;
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedLog {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            log: self,
            write_through: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        LineWriter {
            log: self,
            write_through: *meta.level() <= Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Long enough that nothing reaches the output unless written through or flushed.
    const NEVER: Duration = Duration::from_secs(3600);

    /// An output the test can read while the log still holds it.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            lock(&self.0).extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(lock(&self.0).clone()).unwrap()
        }
    }

    fn line(log: &BatchedLog, text: &str) {
        log.make_writer().write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn lines_are_batched_until_the_guard_flushes_them() {
        let out = Captured::default();
        let (log, guard) = BatchedLog::with_delay(out.clone(), NEVER).unwrap();
        line(&log, "one\n");
        line(&log, "two\n");
        assert_eq!(out.text(), "", "lines are batched, not written one by one");
        drop(guard);
        assert_eq!(out.text(), "one\ntwo\n");
    }

    #[test]
    fn lines_reach_the_output_within_the_delay_without_a_flush() {
        let out = Captured::default();
        let (log, _guard) = BatchedLog::new(out.clone()).unwrap();
        line(&log, "one\n");
        line(&log, "two\n");
        let deadline = Instant::now() + Duration::from_secs(5);
        while out.text().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(out.text(), "one\ntwo\n");
    }

    #[test]
    fn warnings_are_written_through_after_the_lines_before_them() {
        let out = Captured::default();
        let (log, _guard) = BatchedLog::with_delay(out.clone(), NEVER).unwrap();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(log)
            .with_ansi(false)
            .without_time()
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("first");
            assert_eq!(out.text(), "", "info lines are batched");
            tracing::warn!("second");
        });
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].ends_with("first") && lines[1].ends_with("second"),
            "{text}"
        );
    }

    #[test]
    fn a_full_buffer_is_written_by_its_own_thread() {
        let out = Captured::default();
        let (log, _guard) = BatchedLog::with_delay(out.clone(), NEVER).unwrap();
        let text = "x".repeat(99) + "\n";
        let lines = BatchedLog::THRESHOLD / text.len() + 1;
        for _ in 0..lines {
            line(&log, &text);
        }
        assert_eq!(
            out.text().len(),
            lines * text.len(),
            "written at the threshold"
        );
    }

    #[test]
    fn the_guard_flushes_every_thread_and_no_line_is_torn_or_lost() {
        let out = Captured::default();
        let (log, guard) = BatchedLog::new(out.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        line(
                            &log,
                            &format!("thread={t} line={i:05} {}\n", "y".repeat(i % 50)),
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let text = out.text();
        let mut next = [0usize; 4];
        for l in text.lines() {
            let (t, rest) = l
                .strip_prefix("thread=")
                .and_then(|r| r.split_once(" line="))
                .unwrap_or_else(|| panic!("torn line {l:?}"));
            let t: usize = t.parse().unwrap();
            let i: usize = rest[..5].parse().unwrap();
            assert_eq!(i, next[t], "thread {t}'s lines out of order");
            assert_eq!(rest[5..], format!(" {}", "y".repeat(i % 50)));
            next[t] += 1;
        }
        assert_eq!(next, [5_000; 4], "every line written exactly once");
    }

    #[test]
    fn buffers_of_finished_threads_are_forgotten() {
        let out = Captured::default();
        let (log, _guard) = BatchedLog::new(out.clone()).unwrap();
        for _ in 0..10 {
            let log = log.clone();
            std::thread::spawn(move || line(&log, "short-lived\n"))
                .join()
                .unwrap();
        }
        log.shared.flush_all();
        assert_eq!(out.text().lines().count(), 10);
        assert!(lock(&log.shared.buffers).is_empty());
    }
}
