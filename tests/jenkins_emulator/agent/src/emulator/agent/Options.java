package emulator.agent;

import java.io.IOException;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** agent.jar's command line (hudson.remoting.Launcher), with its consistency checks. */
final class Options {
    String url;
    String secret;
    String name;
    boolean webSocket;
    String workDir;
    String internalDir = "remoting";
    String jnlpUrl;
    boolean noReconnect;
    boolean failIfWorkDirIsMissing;
    final Map<String, String> headers = new LinkedHashMap<>();

    static final class UsageError extends Exception {
        UsageError(String message) {
            super(message);
        }
    }

    static Options parse(String[] args) throws UsageError, IOException {
        Options o = new Options();
        List<String> positional = new ArrayList<>();
        for (int k = 0; k < args.length; k++) {
            String a = args[k];
            switch (a) {
                case "-url": o.url = need(args, ++k, a); break;
                case "-secret": o.secret = need(args, ++k, a); break;
                case "-name": o.name = need(args, ++k, a); break;
                case "-webSocket": o.webSocket = true; break;
                case "-workDir": o.workDir = need(args, ++k, a); break;
                case "-internalDir": o.internalDir = need(args, ++k, a); break;
                case "-jnlpUrl": o.jnlpUrl = need(args, ++k, a); break;
                case "-noReconnect": o.noReconnect = true; break;
                case "-failIfWorkDirIsMissing": o.failIfWorkDirIsMissing = true; break;
                case "-webSocketHeader": {
                    String h = need(args, ++k, a);
                    int eq = h.indexOf('=');
                    if (eq < 1) throw new UsageError("-webSocketHeader takes NAME=VALUE");
                    o.headers.put(h.substring(0, eq), h.substring(eq + 1));
                    break;
                }
                // Accepted and ignored: they change nothing in a loopback test.
                case "-agentLog": case "-cert": case "-noReconnectAfter": need(args, ++k, a); break;
                case "-noCertificateCheck": case "-disableHttpsCertValidation": case "-headless": break;
                case "-tunnel": case "-direct": case "-instanceIdentity": case "-credentials":
                    throw new UsageError(a + " is not supported by the emulator's stand-in agent");
                default:
                    if (a.startsWith("-")) throw new UsageError("\"" + a + "\" is not a valid option");
                    positional.add(a);
            }
        }
        if (o.secret != null && o.secret.startsWith("@")) {
            o.secret = Files.readString(Path.of(o.secret.substring(1)), StandardCharsets.UTF_8).trim();
        }
        if (o.jnlpUrl != null) {
            if (o.url != null || o.name != null || o.webSocket) {
                throw new UsageError("-jnlpUrl cannot be used with -url, -name or -webSocket");
            }
            o.fromJnlpUrl();
        } else if (positional.size() == 2 && o.secret == null && o.name == null) {
            o.secret = positional.get(0);   // legacy: <secret> <agent name>
            o.name = positional.get(1);
        } else if (!positional.isEmpty()) {
            throw new UsageError("unexpected arguments: " + positional);
        }
        if (o.url == null) throw new UsageError("-url is required");
        if (o.name == null || o.secret == null) throw new UsageError("-name and -secret are required");
        if (!o.url.endsWith("/")) o.url += "/";
        return o;
    }

    /** Liberty: the .jnlp is not fetched; its URL already names the controller and the agent. */
    private void fromJnlpUrl() throws UsageError {
        int at = jnlpUrl.indexOf("/computer/");
        int end = jnlpUrl.lastIndexOf('/');
        if (at < 0 || end <= at + 10) throw new UsageError("cannot read the agent name from -jnlpUrl " + jnlpUrl);
        url = jnlpUrl.substring(0, at + 1);
        name = URLDecoder.decode(jnlpUrl.substring(at + 10, end), StandardCharsets.UTF_8);
        webSocket = true;
    }

    private static String need(String[] args, int k, String option) throws UsageError {
        if (k >= args.length) throw new UsageError("Option \"" + option + "\" takes an operand");
        return args[k];
    }
}
