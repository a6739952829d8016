package emulator.agent;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Stand-in for Jenkins' agent.jar, for the emulator in tests/jenkins_emulator (not remoting).
 * Takes agent.jar's flags, checks {@code <url>login}, connects to {@code <url>wsagents/} over
 * WebSocket with Node-Name and Secret-Key, runs the builds it is sent and streams their output.
 * Exit codes: 0 when the controller deletes the node, 1 when the connection is refused
 * (wrong secret, unknown node, already connected) or with -noReconnect after a failure, 2 on bad usage.
 */
public final class Main {
    private Main() {
    }

    public static void main(String[] args) throws Exception {
        Options options;
        try {
            options = Options.parse(args);
        } catch (Options.UsageError e) {
            System.err.println(e.getMessage());
            System.err.println("java -jar agent.jar -url URL -secret SECRET|@FILE -name NAME [-webSocket] [-workDir DIR]");
            System.exit(2);
            return;
        }
        if (options.workDir != null) {
            Path dir = Path.of(options.workDir);
            if (options.failIfWorkDirIsMissing && !Files.isDirectory(dir)) {
                log("SEVERE", "The work directory is missing: " + dir);
                System.exit(1);
            }
            try {
                Files.createDirectories(dir.resolve(options.internalDir));
            } catch (IOException e) {
                log("WARNING", "Cannot create " + dir.resolve(options.internalDir) + ": " + e);
            }
        }
        System.exit(new Agent(options).run());
    }

    static synchronized void log(String level, String message) {
        System.err.println(level + ": " + message);
        System.err.flush();
    }
}
