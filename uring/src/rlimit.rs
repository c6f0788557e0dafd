//! The descriptor limit. A ring's sparse direct-descriptor table is capped at `RLIMIT_NOFILE`
//! as well as the process's file table, so both binaries raise it first thing.

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft limit now in force
/// (read back, so a refused raise reports the old value; `u64::MAX` when unlimited). Without a
/// readable limit it assumes the usual default, 1024.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: `raised` is a valid rlimit; the kernel only reads it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = raised.rlim_cur;
        }
    }
    if lim.rlim_cur == libc::RLIM_INFINITY { u64::MAX } else { lim.rlim_cur }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_to_the_hard_limit() {
        let soft = raise_nofile_limit();
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `lim` is a valid, writable rlimit.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, lim.rlim_max, "the soft limit is raised to the hard one");
        let expected = if lim.rlim_cur == libc::RLIM_INFINITY { u64::MAX } else { lim.rlim_cur };
        assert_eq!(soft, expected);
        assert_eq!(raise_nofile_limit(), soft, "raising again changes nothing");
    }
}
