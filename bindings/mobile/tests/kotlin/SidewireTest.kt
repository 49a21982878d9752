// Signalling between a Kotlin SidewireNode and the tokio node of
// `keyway sidewire listen/send`, through the private mosquitto broker
// test.sh started on loopback (BROKER_PORT); and a pending send that is
// cancelled.

import keyway.KeywayException
import keyway.Keypair
import keyway.MessageListener
import keyway.SidewireNode
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.launch
import kotlinx.coroutines.withTimeout
import java.io.File
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit

fun poolToml(): String = "[[broker]]\nhost = \"127.0.0.1\"\nport = ${env("BROKER_PORT")}\n"

/** Collects what a node receives. */
class Inbox : MessageListener {
    val messages = LinkedBlockingQueue<Pair<String, String>>()

    override fun onMessage(fromPkHex: String, message: ByteArray) {
        messages.put(fromPkHex to message.decodeToString())
    }
}

private fun hex(bytes: ByteArray) = bytes.joinToString("") { "%02x".format(it) }

suspend fun testSidewire() {
    val dir = File(scratch, "sidewire-${System.nanoTime()}").apply { mkdirs() }
    val pool = File(dir, "pool.toml").apply { writeText(poolToml()) }
    val inbox = Inbox()
    SidewireNode(Keypair.generate(), poolToml(), inbox).use { node ->
        node.start()

        // Kotlin → tokio: the listener prints what it received.
        val listenerKey = File(dir, "listener.key").path
        val listenerPk = keyway("keygen", "--out", listenerKey).trim()
        Proc(
            keywayBin, "sidewire", "listen", "--key", listenerKey, "--brokers", pool.path,
            "--count", "1", "--timeout", "60", "--json",
        ).use { listener ->
            val ready = generateSequence { listener.errLine(60) }.take(100).firstOrNull { it.startsWith("listening") }
            check(ready != null) { "the tokio listener did not start: ${listener.stderr()}" }
            val text = "hello from kotlin ${System.nanoTime()}"
            node.send(listenerPk, text.toByteArray(), 20_000u)
            val line = listener.line(30)
            check(line != null) { "the tokio listener printed nothing; stderr: ${listener.stderr()}" }
            check(line!!.contains("\"from\":\"${node.publicKeyHex()}\"")) { "listener saw another sender: $line" }
            check(line.contains("\"msg_hex\":\"${hex(text.toByteArray())}\"")) { "listener saw another message: $line" }
            check(listener.exit(30) == 0) { "the tokio listener failed: ${listener.stderr()}" }
        }

        // tokio → Kotlin: `send` exits 0 once the Kotlin node acknowledged.
        val senderKey = File(dir, "sender.key").path
        val senderPk = keyway("keygen", "--out", senderKey).trim()
        val text = "hello from tokio ${System.nanoTime()}"
        keyway(
            "sidewire", "send", node.publicKeyHex(), text,
            "--key", senderKey, "--brokers", pool.path, "--timeout", "20",
        )
        val got = inbox.messages.poll(30, TimeUnit.SECONDS)
        check(got == senderPk to text) { "the Kotlin listener got $got, not ${senderPk to text}" }
    }
}

suspend fun testSendTimeoutAndCancel() {
    SidewireNode(Keypair.generate(), poolToml(), Inbox()).use { node ->
        node.start()
        val nobody = Keypair.generate().publicKeyHex()

        // Nobody listens: a short send times out.
        expectThrows<KeywayException.Timeout>("a send nobody acknowledges") {
            node.send(nobody, "anyone?".toByteArray(), 300u)
        }
        expectThrows<KeywayException.InvalidInput>("a send to a bad key") {
            node.send("not a key", byteArrayOf(1), 300u)
        }

        // A long send, cancelled while pending: the Rust send stops (its
        // pending entry goes) long before its own timeout.
        coroutineScope {
            val job = launch(start = CoroutineStart.UNDISPATCHED) {
                node.send(nobody, "never acknowledged".toByteArray(), 600_000u)
            }
            check(waitUntil(20) { node.pendingSends() == 1uL }) { "the send never became pending" }
            job.cancel()
            withTimeout(20_000) { job.join() }
            check(job.isCancelled) { "the send's coroutine was not cancelled" }
            check(waitUntil(20) { node.pendingSends() == 0uL }) {
                "the cancelled send is still pending in Rust (${node.pendingSends()})"
            }
        }
    }
}

/** Two Kotlin nodes; closing one (dropping the Rust node) takes it off the pool. */
suspend fun testCloseLeavesThePool() {
    val inbox = Inbox()
    val sender = SidewireNode(Keypair.generate(), poolToml(), Inbox())
    sender.use {
        sender.start()
        val receiver = SidewireNode(Keypair.generate(), poolToml(), inbox)
        val receiverPk = receiver.publicKeyHex()
        receiver.use {
            receiver.start()
            sender.send(receiverPk, "before close".toByteArray(), 20_000u)
            val got = inbox.messages.poll(30, TimeUnit.SECONDS)
            check(got == sender.publicKeyHex() to "before close") { "the receiver got $got" }
        }
        expectThrows<KeywayException.Timeout>("a send to a closed node") {
            sender.send(receiverPk, "after close".toByteArray(), 3_000u)
        }
        check(inbox.messages.isEmpty()) { "the closed node still received ${inbox.messages}" }
    }
}

/** A listener that throws loses that message only: the node goes on delivering. */
suspend fun testThrowingListener() {
    val received = LinkedBlockingQueue<String>()
    val listener = object : MessageListener {
        override fun onMessage(fromPkHex: String, message: ByteArray) {
            val text = message.decodeToString()
            if (text == "throw") throw IllegalStateException("the app's listener failed")
            received.put(text)
        }
    }
    SidewireNode(Keypair.generate(), poolToml(), Inbox()).use { sender ->
        sender.start()
        SidewireNode(Keypair.generate(), poolToml(), listener).use { receiver ->
            receiver.start()
            // Acknowledged or not (the ACK may go before or after the
            // listener), the node must survive it.
            try {
                sender.send(receiver.publicKeyHex(), "throw".toByteArray(), 5_000u)
            } catch (_: KeywayException.Timeout) {
            }
            sender.send(receiver.publicKeyHex(), "after".toByteArray(), 20_000u)
            val got = received.poll(30, TimeUnit.SECONDS)
            check(got == "after") { "after a throwing call the listener got $got" }
        }
    }
}
