using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace SpatialMllm.Research.Runtime;

/// <summary>
/// The few Linux process and file-lock calls .NET does not expose: the parent-death signal (so worker processes die
/// with the process that started them), sending a signal by pid, and open-file-description record locks. Each is a
/// no-op or reports "unsupported" off Linux.
/// </summary>
internal static class PosixProcess
{
    public const int SigKill = 9, SigTerm = 15;

    /// <summary>Asks the kernel to send <paramref name="signal"/> to this process when its parent exits, then checks the
    /// parent is still <paramref name="expectedParentPid"/> (it may have died before the request). False: the parent is gone.</summary>
    public static bool DieWithParent(int expectedParentPid, int signal = SigKill)
    {
        if (!OperatingSystem.IsLinux()) return true;
        const int PR_SET_PDEATHSIG = 1;
        if (prctl(PR_SET_PDEATHSIG, (nuint)signal, 0, 0, 0) != 0)
            throw new InvalidOperationException($"prctl(PR_SET_PDEATHSIG) failed (errno {Marshal.GetLastPInvokeError()}).");
        return getppid() == expectedParentPid;
    }

    /// <summary>Sends <paramref name="signal"/> to a process; false if it is already gone.</summary>
    public static bool Signal(int pid, int signal) => OperatingSystem.IsLinux() && kill(pid, signal) == 0;

    /// <summary>Takes an exclusive lock on the whole file open in <paramref name="handle"/> without waiting. An
    /// open-file-description lock (F_OFD_SETLK): held until the handle is closed, not tied to other descriptors of the same
    /// file, and independent of the flock() locks .NET's FileStream takes, so other processes can still read the file.
    /// Returns false when another process holds it; null when the platform has no such locks.</summary>
    public static bool? TryLockExclusive(SafeFileHandle handle)
    {
        if (!OperatingSystem.IsLinux()) return null;
        const int F_OFD_SETLK = 37;
        const short F_WRLCK = 1;
        var request = new Flock { Type = F_WRLCK, Whence = 0, Start = 0, Length = 0, Pid = 0 };
        if (fcntl(handle, F_OFD_SETLK, ref request) == 0) return true;
        int errno = Marshal.GetLastPInvokeError();
        const int EACCES = 13, EAGAIN = 11, EINVAL = 22;
        if (errno is EACCES or EAGAIN) return false;
        if (errno == EINVAL) return null;   // kernels before 3.15
        throw new IOException($"fcntl(F_OFD_SETLK) failed (errno {errno}).");
    }

    [StructLayout(LayoutKind.Sequential)]
    struct Flock
    {
        public short Type;
        public short Whence;
        public long Start;
        public long Length;
        public int Pid;
    }

    [DllImport("libc", SetLastError = true)]
    static extern int prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);

    [DllImport("libc", SetLastError = true)]
    static extern int getppid();

    [DllImport("libc", SetLastError = true)]
    static extern int kill(int pid, int sig);

    [DllImport("libc", SetLastError = true)]
    static extern int fcntl(SafeFileHandle fd, int cmd, ref Flock lk);
}
