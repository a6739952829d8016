package emulator.agent;

import java.io.File;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.security.SecureRandom;
import java.util.Map;
import java.util.stream.Stream;

/**
 * A pipeline {@code sh} step as Jenkins runs it: a durable task, detached from the agent.
 *
 * <p>The shape follows these sources, read for it (no code taken):
 * jenkinsci/durable-task-plugin {@code src/main/java/org/jenkinsci/plugins/durabletask/FileMonitoringTask.java}
 * (the control directory {@code <workspace>@tmp/durable-<8 hex>}, {@code jenkins-log.txt},
 * {@code jenkins-result.txt}, the cookie {@code JENKINS_SERVER_COOKIE=durable-<digest of the workspace path>},
 * stop = kill every process whose environment carries the cookie) and
 * {@code BourneShellScript.java} (the script written to {@code script.sh}; the shell wrapper run in
 * the background: {@code jsc=COOKIE; JENKINS_SERVER_COOKIE=$jsc sh -xe script.sh > log 2>&1;
 * echo $? > result.tmp; mv result.tmp result}, the wrapper itself marked {@code please-do-not-kill-me});
 * jenkinsci/workflow-durable-task-step-plugin
 * {@code src/main/java/org/jenkinsci/plugins/workflow/steps/durable_task/DurableTaskStep.java}
 * (the step polls the log and the result file; the log is copied from the last offset).
 *
 * <p>Liberties: the wrapper is the shell one (durable-task's current default on Linux is a Go binary
 * started with setsid; both leave the script a detached orphan, not a child of agent.jar); no
 * heartbeat touching of the log; the poll is every 100 ms (Jenkins backs off to seconds).
 */
final class Durable {
    private static final SecureRandom RANDOM = new SecureRandom();
    private static final String COOKIE = "JENKINS_SERVER_COOKIE";

    private Durable() {}

    static int sh(Runner.Build b, Runner runner, String script, File ws, Map<String, Object> env, String prefix)
            throws IOException, InterruptedException {
        File control = new File(ws.getPath() + "@tmp", "durable-" + hex(4));
        if (!control.mkdirs()) throw new IOException("cannot create " + control);
        File scriptFile = new File(control, "script.sh");
        File log = new File(control, "jenkins-log.txt");
        File result = new File(control, "jenkins-result.txt");
        Files.write(scriptFile.toPath(), script.getBytes(StandardCharsets.UTF_8));
        String cookie = "durable-" + digest(ws.getPath());
        String wrapper = "jsc=" + cookie + "; " + COOKIE + "=$jsc '/bin/sh' -xe '" + scriptFile + "' > '" + log
                + "' 2>&1; echo $? > '" + result + ".tmp'; mv '" + result + ".tmp' '" + result + "'";
        ProcessBuilder pb = new ProcessBuilder("/bin/sh", "-c", "(" + wrapper + ") </dev/null >/dev/null 2>&1 &")
                .directory(ws);
        env.forEach((k, v) -> pb.environment().put(k, String.valueOf(v)));
        pb.environment().put("WORKSPACE", ws.getPath());
        pb.environment().put(COOKIE, "please-do-not-kill-me");
        synchronized (b) {
            if (b.aborted) return 143;
            b.cookies.add(cookie);
        }
        try {
            Process launcher = pb.start();
            launcher.getOutputStream().close();
            launcher.waitFor();                       // returns at once: the wrapper runs on, detached
            long offset = 0;
            StringBuilder partial = new StringBuilder();
            while (true) {
                boolean done = result.length() > 0;   // read the log once more after the result shows
                offset = copy(b, runner, log, offset, prefix, partial, done);
                if (done) break;
                Thread.sleep(100);
            }
            return Integer.parseInt(new String(Files.readAllBytes(result.toPath()), StandardCharsets.UTF_8).trim());
        } catch (NumberFormatException e) {
            throw new IOException("corrupted content in " + result + ": " + e);
        } finally {
            synchronized (b) {
                b.cookies.remove(cookie);
            }
        }
    }

    /** New bytes of the log from {@code offset}; whole lines only (each prefixed) until the end. */
    private static long copy(Runner.Build b, Runner runner, File log, long offset, String prefix,
                             StringBuilder partial, boolean end) throws IOException {
        if (!log.exists()) return offset;
        try (RandomAccessFile f = new RandomAccessFile(log, "r")) {
            long len = f.length();
            if (len > offset) {
                byte[] buf = new byte[(int) Math.min(len - offset, 1 << 20)];
                f.seek(offset);
                f.readFully(buf);
                offset += buf.length;
                partial.append(new String(buf, StandardCharsets.UTF_8));
            }
        }
        int cut = end ? partial.length() : partial.lastIndexOf("\n") + 1;
        if (cut > 0) {
            String text = partial.substring(0, cut);
            partial.delete(0, cut);
            if (!prefix.isEmpty()) text = prefix + text.replaceAll("\n(?!$)", "\n" + prefix);
            runner.emit(b, text);
        }
        return offset;
    }

    /** ProcessTree.killAll by environment: SIGTERM to every process carrying the cookie (Linux /proc). */
    static void kill(String cookie) {
        byte[] needle = (COOKIE + "=" + cookie + "\0").getBytes(StandardCharsets.UTF_8);
        try (Stream<Path> procs = Files.list(Paths.get("/proc"))) {
            procs.filter(p -> p.getFileName().toString().matches("\\d+")).forEach(p -> {
                try {
                    byte[] environ = Files.readAllBytes(p.resolve("environ"));
                    if (contains(environ, needle)) {
                        ProcessHandle.of(Long.parseLong(p.getFileName().toString())).ifPresent(ProcessHandle::destroy);
                    }
                } catch (IOException | RuntimeException ignored) {
                    // gone, or not ours to read
                }
            });
        } catch (IOException ignored) {
            // no /proc: nothing to kill this way
        }
    }

    private static boolean contains(byte[] hay, byte[] needle) {
        outer:
        for (int i = 0; i + needle.length <= hay.length; i++) {
            if (i > 0 && hay[i - 1] != 0) continue;          // variables start after a NUL
            for (int j = 0; j < needle.length; j++) if (hay[i + j] != needle[j]) continue outer;
            return true;
        }
        return false;
    }

    private static String hex(int bytes) {
        byte[] b = new byte[bytes];
        RANDOM.nextBytes(b);
        StringBuilder s = new StringBuilder();
        for (byte x : b) s.append(String.format("%02x", x));
        return s.toString();
    }

    private static String digest(String text) {
        try {
            StringBuilder s = new StringBuilder();
            for (byte x : MessageDigest.getInstance("MD5").digest(text.getBytes(StandardCharsets.UTF_8))) {
                s.append(String.format("%02x", x));
            }
            return s.toString();
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
