package emulator.agent;

import java.io.BufferedInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.util.Base64;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.function.Consumer;

/**
 * One WebSocket connection (RFC 6455 client over a plain socket: java.net.http's client takes
 * over a second to start, which every test would pay). One thread reads frames and hands text to
 * {@code onMessage}; one thread writes (masked) frames, so sends never interleave; a heartbeat
 * pings every 2 s.
 */
final class Link {
    static final class HandshakeFailed extends IOException {
        final int status;

        HandshakeFailed(int status, String body) {
            super("HTTP " + status + " " + body);
            this.status = status;
        }
    }

    private static final byte[] PING = new byte[0];
    private final BlockingQueue<byte[]> out = new LinkedBlockingQueue<>();
    private final CountDownLatch closed = new CountDownLatch(1);
    private final Consumer<String> onMessage;
    private final SecureRandom random = new SecureRandom();
    private Socket socket;

    Link(Consumer<String> onMessage) {
        this.onMessage = onMessage;
    }

    void connect(String wsUrl, Map<String, String> headers) throws IOException {
        URI uri = URI.create(wsUrl);
        int port = uri.getPort() > 0 ? uri.getPort() : 80;
        socket = new Socket();
        socket.connect(new InetSocketAddress(uri.getHost(), port), 10_000);
        socket.setSoTimeout(30_000);
        byte[] nonce = new byte[16];
        random.nextBytes(nonce);
        StringBuilder req = new StringBuilder("GET " + uri.getRawPath() + " HTTP/1.1\r\n")
                .append("Host: ").append(uri.getHost()).append(':').append(port).append("\r\n")
                .append("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n")
                .append("Sec-WebSocket-Key: ").append(Base64.getEncoder().encodeToString(nonce)).append("\r\n");
        headers.forEach((k, v) -> req.append(k).append(": ").append(v).append("\r\n"));
        OutputStream os = socket.getOutputStream();
        os.write(req.append("\r\n").toString().getBytes(StandardCharsets.UTF_8));
        os.flush();
        DataInputStream in = new DataInputStream(new BufferedInputStream(socket.getInputStream()));
        String status = line(in);
        int code = Integer.parseInt(status.split(" ")[1]);
        int length = 0;
        for (String h = line(in); !h.isEmpty(); h = line(in)) {
            if (h.toLowerCase().startsWith("content-length:")) length = Integer.parseInt(h.substring(15).trim());
        }
        if (code != 101) {
            byte[] body = new byte[length];
            in.readFully(body);
            socket.close();
            throw new HandshakeFailed(code, new String(body, StandardCharsets.UTF_8));
        }
        socket.setSoTimeout(0);
        start("agent-reader", () -> readLoop(in));
        start("agent-sender", this::sendLoop);
        start("agent-heartbeat", this::pingLoop);
    }

    private static void start(String name, Runnable r) {
        Thread t = new Thread(r, name);
        t.setDaemon(true);
        t.start();
    }

    private static String line(InputStream in) throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        for (int c = in.read(); c != '\n'; c = in.read()) {
            if (c < 0) throw new IOException("connection closed during the handshake");
            if (c != '\r') b.write(c);
        }
        return b.toString(StandardCharsets.UTF_8);
    }

    void send(String message) {
        if (!isClosed()) out.add(message.getBytes(StandardCharsets.UTF_8));
    }

    boolean isClosed() {
        return closed.getCount() == 0;
    }

    void awaitClose() throws InterruptedException {
        closed.await();
    }

    void close() {
        closed.countDown();
        out.add(PING);          // wake the sender so it sees the close
        try {
            if (socket != null) socket.close();
        } catch (IOException ignored) {
            // already gone
        }
    }

    private void readLoop(DataInputStream in) {
        ByteArrayOutputStream message = new ByteArrayOutputStream();
        try {
            while (!isClosed()) {
                int b0 = in.readUnsignedByte();
                int b1 = in.readUnsignedByte();
                long len = b1 & 0x7F;
                if (len == 126) len = in.readUnsignedShort();
                else if (len == 127) len = in.readLong();
                byte[] mask = (b1 & 0x80) != 0 ? in.readNBytes(4) : null;
                byte[] payload = new byte[(int) len];
                in.readFully(payload);
                if (mask != null) for (int k = 0; k < payload.length; k++) payload[k] ^= mask[k % 4];
                int opcode = b0 & 0x0F;
                if (opcode == 0x8) break;                        // close
                if (opcode == 0x9) { frame(0xA, payload); continue; }  // ping -> pong
                if (opcode == 0xA) continue;
                message.write(payload);
                if ((b0 & 0x80) != 0) {
                    String text = message.toString(StandardCharsets.UTF_8);
                    message.reset();
                    try {
                        onMessage.accept(text);
                    } catch (RuntimeException e) {
                        Main.log("WARNING", "bad message from the controller: " + e);
                    }
                }
            }
        } catch (IOException e) {
            // connection lost: fall through to close
        }
        close();
    }

    private void sendLoop() {
        try {
            while (!isClosed()) {
                byte[] m = out.take();
                if (isClosed()) break;
                frame(m == PING ? 0x9 : 0x1, m);
            }
        } catch (IOException | InterruptedException e) {
            close();
        }
    }

    private synchronized void frame(int opcode, byte[] payload) throws IOException {
        ByteArrayOutputStream f = new ByteArrayOutputStream(payload.length + 14);
        f.write(0x80 | opcode);
        if (payload.length < 126) {
            f.write(0x80 | payload.length);
        } else if (payload.length < 65536) {
            f.write(0x80 | 126);
            f.write(payload.length >> 8);
            f.write(payload.length & 0xFF);
        } else {
            f.write(0x80 | 127);
            for (int s = 56; s >= 0; s -= 8) f.write((int) ((long) payload.length >> s) & 0xFF);
        }
        byte[] mask = new byte[4];
        random.nextBytes(mask);
        f.write(mask);
        for (int k = 0; k < payload.length; k++) f.write(payload[k] ^ mask[k % 4]);
        OutputStream os = socket.getOutputStream();
        os.write(f.toByteArray());
        os.flush();
    }

    private void pingLoop() {
        // Heartbeat: the controller drops a channel that stays silent for its agent timeout.
        while (!isClosed()) {
            try {
                Thread.sleep(2000);
            } catch (InterruptedException e) {
                return;
            }
            if (!isClosed()) out.add(PING);
        }
    }
}
