// The test runner's plumbing: checks, the processes a test starts (the
// `keyway` CLI as the tokio peer), bounded waits. Every wait has a limit;
// every process started is killed by its own handle (its PID) at the end.

import java.io.File
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit

class TestFailure(message: String) : Exception(message)

fun check(condition: Boolean, what: () -> String) {
    if (!condition) throw TestFailure(what())
}

fun env(name: String): String =
    System.getenv(name) ?: throw TestFailure("environment variable $name is not set (run bindings/mobile/test.sh)")

/** The `keyway` binary built by test.sh. */
val keywayBin: String get() = env("KEYWAY_BIN")

/** A scratch directory of test.sh's, removed by it. */
val scratch: File get() = File(env("KEYWAY_TEST_DIR"))

/** A started process whose stdout and stderr lines are read as they come. */
class Proc(vararg command: String) : AutoCloseable {
    private val process: Process = ProcessBuilder(*command).start()
    private val out = LinkedBlockingQueue<String>()
    private val err = LinkedBlockingQueue<String>()
    val pid: Long get() = process.pid()

    init {
        reader(process.inputStream.bufferedReader(), out)
        reader(process.errorStream.bufferedReader(), err)
    }

    private fun reader(r: java.io.BufferedReader, q: LinkedBlockingQueue<String>) {
        Thread {
            try {
                r.forEachLine { q.put(it) }
            } catch (_: java.io.IOException) {
                // The process was killed: nothing more to read.
            }
        }.apply { isDaemon = true }.start()
    }

    /** The next stdout line, within `seconds`; null at the limit. */
    fun line(seconds: Long): String? = out.poll(seconds, TimeUnit.SECONDS)

    /** The next stderr line, within `seconds`; null at the limit. */
    fun errLine(seconds: Long): String? = err.poll(seconds, TimeUnit.SECONDS)

    /** The first stdout line starting with `prefix`, the rest of it. */
    fun value(prefix: String, seconds: Long): String {
        val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds)
        while (System.nanoTime() < deadline) {
            val left = TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime()).coerceAtLeast(1)
            val line = out.poll(left, TimeUnit.MILLISECONDS) ?: break
            if (line.startsWith(prefix)) return line.removePrefix(prefix)
        }
        throw TestFailure("pid $pid printed no '$prefix' line within $seconds s; stderr: ${err.toList()}")
    }

    /** Waits (at most `seconds`) for the exit; its code, or null if still running. */
    fun exit(seconds: Long): Int? =
        if (process.waitFor(seconds, TimeUnit.SECONDS)) process.exitValue() else null

    fun stderr(): List<String> = err.toList()

    override fun close() {
        process.destroy()
        if (!process.waitFor(5, TimeUnit.SECONDS)) process.destroyForcibly()
    }
}

/** Runs the CLI to its end (at most 60 s) and returns its stdout; fails on a non-zero exit. */
fun keyway(vararg args: String): String {
    val p = ProcessBuilder(keywayBin, *args).redirectErrorStream(true).start()
    val output = StringBuilder()
    val reader = Thread { output.append(p.inputStream.bufferedReader().readText()) }.apply { start() }
    val done = p.waitFor(60, TimeUnit.SECONDS)
    if (!done) p.destroyForcibly()
    reader.join(5_000)
    check(done && p.exitValue() == 0) { "keyway ${args.joinToString(" ")} failed: $output" }
    return output.toString()
}

/** Polls `condition` every 50 ms for at most `seconds`; whether it held. */
fun waitUntil(seconds: Long, condition: () -> Boolean): Boolean {
    val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds)
    while (System.nanoTime() < deadline) {
        if (condition()) return true
        Thread.sleep(50)
    }
    return condition()
}

/** Runs `block`, expecting it to throw an `E`; returns it. */
inline fun <reified E : Throwable> expectThrows(what: String, block: () -> Unit): E {
    try {
        block()
    } catch (e: Throwable) {
        if (e is E) return e
        throw TestFailure("$what: expected ${E::class.simpleName}, got $e")
    }
    throw TestFailure("$what: expected ${E::class.simpleName}, nothing was thrown")
}
