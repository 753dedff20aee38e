//! Secret hashing with argon2id, off the async runtime and bounded: a flood
//! of sign-ins must not stall other routes.

use crate::error::ApiError;
use crate::measure as metrics;
use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::alloc::Layout;
#[cfg(not(unix))]
use std::alloc::{GlobalAlloc, System};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Runs argon2id off the async runtime, a bounded number at a time, in
/// working memory (19 MiB a hash) reused from one hash to the next: fresh
/// pages for every hash cost more than a third of a sign-in's CPU. The
/// memory is kept while hashes come less than [`KEEP_IDLE`] apart, then goes
/// back to the system.
#[derive(Debug)]
pub struct Hashing {
    permits: Semaphore,
    /// Working memory of finished hashes, for the next ones.
    spare: Arc<Mutex<Vec<Memory>>>,
    /// Hashes asked for and not finished, waiting or running.
    wanted: AtomicUsize,
    /// Hashes asked for so far: an idle period ends when it moves.
    asked: Arc<AtomicU64>,
}

/// How long working memory outlives the last hash. Sign-ins a few seconds
/// apart reuse it (one after another, each cost 28 ms of CPU in fresh pages
/// and 16 in reused ones); an idle service gives it back.
pub const KEEP_IDLE: Duration = Duration::from_secs(5);

/// One hash asked for; when the last one is dropped, the spare memory is
/// freed unless another hash is asked for within [`KEEP_IDLE`].
struct Wanted<'a>(&'a Hashing);

impl Drop for Wanted<'_> {
    fn drop(&mut self) {
        let hashing = self.0;
        if hashing.wanted.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let (spare, asked) = (hashing.spare.clone(), hashing.asked.clone());
        let idle_since = asked.load(Ordering::Acquire);
        let release = move || {
            if asked.load(Ordering::Acquire) == idle_since {
                spare.lock().unwrap_or_else(PoisonError::into_inner).clear();
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    tokio::time::sleep(KEEP_IDLE).await;
                    release();
                });
            }
            Err(_) => release(),
        }
    }
}

/// A hash waiting for a permit: counted in the queue's depth while it waits
/// and its wait recorded when it stops waiting (given a permit, or cancelled).
struct Queued(Instant);

impl Queued {
    fn new() -> Self {
        ::metrics::gauge!(metrics::HASHING_QUEUE).increment(1.0);
        Self(Instant::now())
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        ::metrics::gauge!(metrics::HASHING_QUEUE).decrement(1.0);
        ::metrics::histogram!(metrics::HASHING_WAIT).record(self.0.elapsed().as_secs_f64());
    }
}

impl Hashing {
    /// At most `permits` hashes at once (at least one).
    pub fn new(permits: usize) -> Self {
        Self {
            permits: Semaphore::new(permits.max(1)),
            spare: Arc::default(),
            wanted: AtomicUsize::new(0),
            asked: Arc::default(),
        }
    }

    /// Hashes `secret` with argon2id and a fresh salt into a PHC string.
    pub async fn hash(&self, secret: String) -> Result<String, ApiError> {
        self.run(move |memory| hash_in(memory, secret.as_bytes()))
            .await?
            .map_err(|e| ApiError::internal(anyhow::anyhow!("hashing failed: {e}")))
    }

    /// Whether `secret` matches the PHC string `hash`.
    pub async fn verify(&self, hash: String, secret: String) -> Result<bool, ApiError> {
        self.run(move |memory| verify_in(memory, &hash, secret.as_bytes()))
            .await?
            // No working memory: an error, not an answer that the secret is wrong.
            .map_err(|e| ApiError::internal(anyhow::anyhow!("hashing failed: {e}")))
    }

    /// Runs `work` on a blocking thread at background priority, with working memory.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        self.asked.fetch_add(1, Ordering::AcqRel);
        self.wanted.fetch_add(1, Ordering::AcqRel);
        let _wanted = Wanted(self);
        let queued = Queued::new();
        let _permit = self.permits.acquire().await.map_err(ApiError::internal)?;
        drop(queued);
        let memory = self
            .spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let (memory, out) = tokio::task::spawn_blocking(move || {
            background_priority();
            let mut memory = memory.unwrap_or_default();
            let out = work(&mut memory);
            (memory, out)
        })
        .await
        .map_err(ApiError::internal)?;
        self.spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(memory);
        Ok(out)
    }

    /// Spare working memories kept for the next hashes.
    #[cfg(test)]
    fn spare_count(&self) -> usize {
        self.spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Hashing yields the CPU to request handling. The blocking threads that hash
/// run at a lower scheduling priority (nice 10; Linux sets it per thread).
fn background_priority() {
    #[cfg(target_os = "linux")]
    {
        thread_local!(static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
        LOWERED.with(|lowered| {
            if !lowered.get() {
                // SAFETY: gettid and setpriority take plain integers and touch no memory of ours.
                let tid = unsafe { libc::gettid() };
                // SAFETY: as above; a failure leaves the priority as it was, which is harmless.
                let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10) };
                lowered.set(true);
            }
        });
    }
}

/// OWASP's argon2id parameters: 19 MiB, 2 passes, 1 lane.
fn owasp_params() -> Params {
    Params::new(19 * 1024, 2, 1, None).unwrap_or_default()
}

/// Argon2's working memory: pages mapped for it alone, outside the process's
/// allocator (mimalloc kept freed blocks in the pages of idle blocking
/// threads: the service held two hashes' 19 MiB each under a later read
/// load, issue 22), filled in by the kernel at once (`MAP_POPULATE`, one
/// call instead of a page fault per 4 KiB), zeroed, and unmapped when dropped.
#[derive(Debug, Default)]
pub struct Memory(Option<(NonNull<Block>, usize)>);

// SAFETY: `Memory` owns its blocks alone, as a `Vec<Block>` would.
unsafe impl Send for Memory {}

impl Memory {
    /// At least `len` blocks: the ones held when enough, else fresh zeroed
    /// ones (only the first hash in this memory pays for them).
    fn at_least(&mut self, len: usize) -> Result<&mut [Block], argon2::Error> {
        let (blocks, held) = match self.0 {
            Some((blocks, held)) if held >= len => (blocks, held),
            _ => {
                let len = len.max(1);
                let bytes = Layout::array::<Block>(len)
                    .map_err(|_| argon2::Error::MemoryTooMuch)?
                    .size();
                // The old blocks go before the new ones come.
                *self = Self::default();
                let blocks = map(bytes).ok_or(argon2::Error::MemoryTooMuch)?;
                self.0 = Some((blocks, len));
                (blocks, len)
            }
        };
        // SAFETY: `blocks` holds `held` initialised blocks (zeroes, then
        // whatever a hash left: any bit pattern is a valid `Block`), which
        // only `self` refers to, for as long as `self` is borrowed.
        Ok(unsafe { std::slice::from_raw_parts_mut(blocks.as_ptr(), held) })
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        if let Some((blocks, held)) = self.0.take() {
            // SAFETY: mapped by `map` with this size, which `at_least` checked.
            unsafe { unmap(blocks, held * size_of::<Block>()) };
        }
    }
}

/// `bytes` of fresh zeroed pages (page-aligned, so aligned for `Block`).
#[cfg(unix)]
fn map(bytes: usize) -> Option<NonNull<Block>> {
    #[cfg(target_os = "linux")]
    let populate = libc::MAP_POPULATE;
    #[cfg(not(target_os = "linux"))]
    let populate = 0;
    // SAFETY: an anonymous private mapping at an address the kernel picks
    // touches no existing memory.
    let pages = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | populate,
            -1,
            0,
        )
    };
    (pages != libc::MAP_FAILED).then(|| NonNull::new(pages.cast()))?
}

/// Unmaps what [`map`] mapped.
///
/// # Safety
/// `blocks` and `bytes` are a mapping of [`map`]'s, not used afterwards.
#[cfg(unix)]
unsafe fn unmap(blocks: NonNull<Block>, bytes: usize) {
    // SAFETY: the caller's promise.
    unsafe { libc::munmap(blocks.as_ptr().cast(), bytes) };
}

#[cfg(not(unix))]
fn map(bytes: usize) -> Option<NonNull<Block>> {
    let layout = Layout::from_size_align(bytes, align_of::<Block>()).ok()?;
    // SAFETY: `layout` has a non-zero size (at least one 1 KiB block).
    NonNull::new(unsafe { System.alloc_zeroed(layout) }.cast())
}

#[cfg(not(unix))]
unsafe fn unmap(blocks: NonNull<Block>, bytes: usize) {
    let layout = Layout::from_size_align(bytes, align_of::<Block>()).expect("mapped with it");
    // SAFETY: allocated by `map` with this layout.
    unsafe { System.dealloc(blocks.as_ptr().cast(), layout) };
}

/// `memory` grown to what `params` needs.
fn blocks_for<'m>(
    memory: &'m mut Memory,
    params: &Params,
) -> Result<&'m mut [Block], argon2::Error> {
    memory.at_least(params.block_count())
}

/// Hashes `secret` with a fresh salt into a PHC string, in `memory`.
pub fn hash_in(memory: &mut Memory, secret: &[u8]) -> argon2::password_hash::Result<String> {
    let params = owasp_params();
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let raw_salt = salt.as_salt().decode_b64(&mut salt_bytes)?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(secret, raw_salt, &mut out, blocks_for(memory, &params)?)?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out)?),
    };
    Ok(hash.to_string())
}

/// Whether `secret` matches the PHC string `hash` (with the parameters it
/// names), computed in `memory` and compared in constant time. A malformed
/// hash matches nothing; only working memory that cannot be had is an error.
fn verify_in(memory: &mut Memory, hash: &str, secret: &[u8]) -> Result<bool, argon2::Error> {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return Ok(false);
    };
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
        parsed.salt,
        parsed.hash,
    ) else {
        return Ok(false);
    };
    let Ok(version) = parsed
        .version
        .map_or(Ok(Version::default()), Version::try_from)
    else {
        return Ok(false);
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(raw_salt) = salt.decode_b64(&mut salt_bytes) else {
        return Ok(false);
    };
    let mut out = [0u8; Output::MAX_LENGTH];
    let out = &mut out[..expected.len()];
    let blocks = blocks_for(memory, &params)?;
    Ok(Argon2::new(algorithm, version, params.clone())
        .hash_password_into_with_memory(secret, raw_salt, out, blocks)
        .is_ok()
        && Output::new(out).is_ok_and(|computed| computed == expected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordVerifier;

    #[tokio::test]
    async fn a_hash_verifies_its_secret_only() {
        let hashing = Hashing::new(2);
        let hash = hashing.hash("correct horse".into()).await.expect("hashed");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(hashing
            .verify(hash.clone(), "correct horse".into())
            .await
            .expect("verified"));
        assert!(!hashing
            .verify(hash, "wrong horse".into())
            .await
            .expect("verified"));
    }

    #[test]
    fn hashes_are_standard_phc_strings() {
        let hash = hash_in(&mut Memory::default(), b"secret").expect("hashed");
        let parsed = PasswordHash::new(&hash).expect("a PHC string");
        assert!(Argon2::default()
            .verify_password(b"secret", &parsed)
            .is_ok());
        // Salts are fresh: the same secret hashes differently.
        assert_ne!(
            hash,
            hash_in(&mut Memory::default(), b"secret").expect("hashed")
        );
    }

    #[test]
    fn malformed_hashes_never_match() {
        let mut memory = Memory::default();
        for hash in ["", "plain", "$argon2id$v=19$m=19456,t=2,p=1$", "$pbkdf2$x"] {
            assert_eq!(
                verify_in(&mut memory, hash, b"secret"),
                Ok(false),
                "{hash:?}"
            );
        }
    }

    #[test]
    fn hashes_with_other_parameters_still_verify() {
        let params = Params::new(8 * 1024, 1, 1, None).expect("parameters");
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::generate(&mut OsRng);
        let hash = argon2::PasswordHasher::hash_password(&argon, b"secret", &salt)
            .expect("hashed")
            .to_string();
        assert_eq!(
            verify_in(&mut Memory::default(), &hash, b"secret"),
            Ok(true)
        );
    }

    #[test]
    fn working_memory_starts_zeroed_grows_and_is_kept_when_large_enough() {
        let mut memory = Memory::default();
        let blocks = memory.at_least(8).expect("blocks");
        assert_eq!(blocks.len(), 8);
        assert!(blocks.iter().all(|b| b.as_ref().iter().all(|w| *w == 0)));
        blocks[7].as_mut()[127] = 42;
        let kept = blocks.as_ptr();
        // Enough already: the same blocks, contents as left.
        let blocks = memory.at_least(4).expect("blocks");
        assert_eq!((blocks.as_ptr(), blocks.len()), (kept, 8));
        assert_eq!(blocks[7].as_ref()[127], 42);
        let blocks = memory.at_least(16).expect("blocks");
        assert_eq!(blocks.len(), 16);
        assert!(blocks.iter().all(|b| b.as_ref().iter().all(|w| *w == 0)));
        // A size no allocator can describe is an error, not an abort.
        assert!(Memory::default().at_least(usize::MAX).is_err());
    }

    /// Lets the release tasks that are due run.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn working_memory_is_kept_between_hashes_and_freed_when_idle() {
        let hashing = Arc::new(Hashing::new(1));
        let hashes: Vec<_> = (0..3)
            .map(|i| {
                let hashing = hashing.clone();
                tokio::spawn(async move { hashing.hash(format!("secret {i}")).await })
            })
            .collect();
        for hash in hashes {
            hash.await.expect("joined").expect("hashed");
        }
        // One permit: the three hashes took turns in one working memory.
        assert_eq!(hashing.wanted.load(Ordering::Acquire), 0);
        assert_eq!(hashing.spare_count(), 1);
        // A hash within the idle period keeps the memory past the first one's end.
        tokio::time::sleep(KEEP_IDLE / 2).await;
        hashing.hash("again".into()).await.expect("hashed");
        tokio::time::sleep(KEEP_IDLE * 3 / 4).await;
        settle().await;
        assert_eq!(hashing.spare_count(), 1);
        // Idle for the whole period after the last hash: the memory is gone.
        tokio::time::sleep(KEEP_IDLE / 2).await;
        settle().await;
        assert_eq!(hashing.spare_count(), 0);
    }

    #[test]
    fn without_a_runtime_working_memory_is_freed_at_once() {
        let hashing = Hashing::new(1);
        hashing.spare.lock().expect("lock").push(Memory::default());
        hashing.wanted.store(1, Ordering::Release);
        drop(Wanted(&hashing));
        assert_eq!(hashing.spare_count(), 0);
    }
}
