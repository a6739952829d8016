package emulator.agent;

import java.io.IOException;
import java.net.HttpURLConnection;
import java.net.URL;
import java.util.LinkedHashMap;
import java.util.Map;

/** The connect / serve / reconnect loop (remoting's Engine, reduced to the test protocol). */
final class Agent {
    private final Options options;
    private final Runner runner;
    private volatile Link link;
    private volatile boolean deleted;

    Agent(Options options) {
        this.options = options;
        this.runner = new Runner(this, options.workDir);
    }

    int run() throws InterruptedException {
        while (true) {
            try {
                checkLogin();
                serve(connect());
                if (deleted) {
                    Main.log("INFO", "The controller deleted node " + options.name + "; exiting");
                    runner.killAll();
                    return 0;
                }
                Main.log("WARNING", "Connection to the controller was lost");
            } catch (Refused e) {
                Main.log("SEVERE", "The server rejected the connection: " + e.getMessage());
                runner.killAll();
                return 1;
            } catch (IOException e) {
                Main.log("WARNING", "Failed to connect to " + options.url + ": " + e);
            }
            if (options.noReconnect) {
                runner.killAll();
                return 1;
            }
            Thread.sleep(1000);     // real agents wait 10 s; tests want faster reconnects
        }
    }

    static final class Refused extends Exception {
        Refused(String message) {
            super(message);
        }
    }

    /** Engine checks {@code <url>login} before opening the channel; anything but 200 is a retry. */
    private void checkLogin() throws IOException {
        HttpURLConnection c = (HttpURLConnection) new URL(options.url + "login").openConnection();
        c.setConnectTimeout(5000);
        c.setReadTimeout(10000);
        try {
            int code = c.getResponseCode();
            if (code != 200) throw new IOException(options.url + "login returned HTTP " + code);
        } finally {
            c.disconnect();
        }
    }

    private Link connect() throws Refused, IOException {
        Link l = new Link(this::onMessage);
        Map<String, String> headers = new LinkedHashMap<>();
        headers.put("Node-Name", options.name);
        headers.put("Secret-Key", options.secret);
        headers.put("X-Remoting-Capability", "emulator-stand-in");
        headers.putAll(options.headers);
        try {
            l.connect(options.url.replaceFirst("^http", "ws") + "wsagents/", headers);
            return l;
        } catch (Link.HandshakeFailed e) {
            if (e.status >= 400 && e.status < 500) throw new Refused(e.getMessage());
            throw e;
        }
    }

    private void serve(Link l) throws InterruptedException {
        link = l;
        Main.log("INFO", "Connected");
        Map<String, Object> hello = new LinkedHashMap<>();
        hello.put("type", "hello");
        hello.put("builds", runner.keys());
        l.send(Json.write(hello));
        runner.resendAll();
        l.awaitClose();
        link = null;
    }

    void send(Map<String, Object> message) {
        Link l = link;
        if (l != null) l.send(Json.write(message));
    }

    private void onMessage(String text) {
        Map<String, Object> m = Json.object(text);
        String type = String.valueOf(m.get("type"));
        switch (type) {
            case "run": runner.start(m); break;
            case "stop": runner.stop(String.valueOf(m.get("build"))); break;
            case "ack": runner.forget(String.valueOf(m.get("build"))); break;
            case "bye": deleted = true; Link l = link; if (l != null) l.close(); break;
            default: Main.log("WARNING", "unknown message type " + type);
        }
    }
}
