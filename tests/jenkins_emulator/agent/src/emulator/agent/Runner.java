package emulator.agent;

import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.Reader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Runs builds' steps with /bin/sh -xe -c in the workspace, keeps every output chunk until the
 * controller acknowledges the result, and resends them (numbered) after a reconnect, so a
 * controller restart loses nothing.
 */
final class Runner {
    private final Agent agent;
    private final String workDir;
    private final Map<String, Build> builds = new ConcurrentHashMap<>();

    static final class Build {
        final String key;
        final List<String> chunks = new ArrayList<>();
        final List<String> cookies = new ArrayList<>();   // durable steps running (their cookie values)
        Integer exit;
        volatile boolean aborted;
        Process process;

        Build(String key) {
            this.key = key;
        }
    }

    Runner(Agent agent, String workDir) {
        this.agent = agent;
        this.workDir = workDir;
    }

    List<String> keys() {
        return new ArrayList<>(builds.keySet());
    }

    void start(Map<String, Object> run) {
        String key = String.valueOf(run.get("build"));
        if (builds.containsKey(key)) return;        // a duplicate run after a reconnect
        Build b = new Build(key);
        builds.put(key, b);
        Thread t = new Thread(() -> execute(b, run), "build-" + key);
        t.setDaemon(true);
        t.start();
    }

    @SuppressWarnings("unchecked")
    private void execute(Build b, Map<String, Object> run) {
        String base = workDir != null ? workDir : String.valueOf(run.get("remoteFS"));
        File ws = new File(base, "workspace/" + run.get("job"));
        int code = 0;
        try {
            if (!ws.isDirectory() && !ws.mkdirs()) throw new IOException("cannot create workspace " + ws);
            for (Object line : (List<Object>) run.get("header")) {
                emit(b, String.valueOf(line).replace("${WORKSPACE}", ws.getPath()));
            }
            Map<String, Object> env = (Map<String, Object>) run.get("env");
            boolean durable = Boolean.TRUE.equals(run.get("durable"));
            code = steps(b, (List<Object>) run.get("steps"), ws, env, durable, "");
        } catch (IOException | InterruptedException e) {
            emit(b, "FATAL: " + e + "\n");
            code = 1;
        }
        synchronized (b) {
            b.exit = code;
            agent.send(result(b));
        }
    }

    /** Steps in order until one fails; a parallel step runs its branches at once and fails if any did. */
    @SuppressWarnings("unchecked")
    private int steps(Build b, List<Object> steps, File ws, Map<String, Object> env, boolean durable, String prefix)
            throws IOException, InterruptedException {
        int code = 0;
        for (Object o : steps) {
            Map<String, Object> step = (Map<String, Object>) o;
            String banner = String.valueOf(step.get("banner"));
            if (!banner.isEmpty()) emit(b, prefix + banner);
            String arg = String.valueOf(step.get("arg"));
            String kind = String.valueOf(step.get("kind"));
            if ("echo".equals(kind)) {
                emit(b, prefix + arg + "\n");
                continue;
            }
            if ("parallel".equals(kind)) {
                code = parallel(b, (List<Object>) step.get("branches"), ws, env, durable);
            } else {
                code = durable ? Durable.sh(b, this, arg, ws, env, prefix) : sh(b, arg, ws, env);
            }
            if (code != 0 || b.aborted) break;
        }
        return code;
    }

    @SuppressWarnings("unchecked")
    private int parallel(Build b, List<Object> branches, File ws, Map<String, Object> env, boolean durable)
            throws InterruptedException {
        int[] codes = new int[branches.size()];
        List<Thread> threads = new ArrayList<>();
        for (int k = 0; k < branches.size(); k++) {
            Map<String, Object> branch = (Map<String, Object>) branches.get(k);
            String name = String.valueOf(branch.get("name"));
            final int slot = k;
            Thread t = new Thread(() -> {
                emit(b, "[Pipeline] { (Branch: " + name + ")\n");
                try {
                    codes[slot] = steps(b, (List<Object>) branch.get("steps"), ws, env, durable, "[" + name + "] ");
                } catch (IOException | InterruptedException e) {
                    emit(b, "[" + name + "] FATAL: " + e + "\n");
                    codes[slot] = 1;
                }
                emit(b, "[Pipeline] }\n");
            }, "branch-" + name);
            t.setDaemon(true);
            t.start();
            threads.add(t);
        }
        for (Thread t : threads) t.join();
        emit(b, "[Pipeline] // parallel\n");
        for (int c : codes) if (c != 0) return c;
        return 0;
    }

    private int sh(Build b, String script, File ws, Map<String, Object> env) throws IOException, InterruptedException {
        ProcessBuilder pb = new ProcessBuilder("/bin/sh", "-xe", "-c", script).directory(ws).redirectErrorStream(true);
        env.forEach((k, v) -> pb.environment().put(k, String.valueOf(v)));
        pb.environment().put("WORKSPACE", ws.getPath());
        synchronized (b) {
            if (b.aborted) return 143;
            b.process = pb.start();
        }
        char[] buf = new char[8192];
        try (Reader r = new InputStreamReader(b.process.getInputStream(), StandardCharsets.UTF_8)) {
            int n;
            while ((n = r.read(buf)) > 0) emit(b, new String(buf, 0, n));
        }
        return b.process.waitFor();
    }

    void emit(Build b, String data) {
        synchronized (b) {
            b.chunks.add(data);
            agent.send(log(b, b.chunks.size() - 1));
        }
    }

    private static Map<String, Object> log(Build b, int seq) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("type", "log");
        m.put("build", b.key);
        m.put("seq", seq);
        m.put("data", b.chunks.get(seq));
        return m;
    }

    private static Map<String, Object> result(Build b) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("type", "result");
        m.put("build", b.key);
        m.put("exit", b.exit);
        m.put("aborted", b.aborted);
        return m;
    }

    /** After a reconnect: every chunk again (the controller drops those it has), then the result. */
    void resendAll() {
        for (Build b : builds.values()) {
            synchronized (b) {
                for (int k = 0; k < b.chunks.size(); k++) agent.send(log(b, k));
                if (b.exit != null) agent.send(result(b));
            }
        }
    }

    void stop(String key) {
        Build b = builds.get(key);
        if (b == null) return;
        synchronized (b) {
            b.aborted = true;
            if (b.process != null) kill(b.process);
            for (String cookie : b.cookies) Durable.kill(cookie);
        }
    }

    void forget(String key) {
        builds.remove(key);
    }

    void killAll() {
        for (Build b : builds.values()) {
            synchronized (b) {
                b.aborted = true;
                if (b.process != null) kill(b.process);
                for (String cookie : b.cookies) Durable.kill(cookie);
            }
        }
    }

    private static void kill(Process p) {
        p.descendants().forEach(ProcessHandle::destroyForcibly);
        p.destroyForcibly();
    }
}
