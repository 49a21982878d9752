// The Kotlin test runner of keyway-mobile (run by bindings/mobile/test.sh):
// each test by name, a failure listed and the exit status non-zero.

import keyway.Keypair
import keyway.NamebumpClient
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withContext
import kotlin.concurrent.thread

/** Calls from threads the library did not start: a plain thread and a dispatcher's. */
suspend fun testAnyThread() {
    NamebumpServer().use { server ->
        val client: NamebumpClient = server.client()
        val owner = Keypair.generate()
        client.put("threads", "t".toByteArray(), owner)
        var fromThread: ByteArray? = null
        val t = thread { fromThread = runBlocking { client.get("threads") } }
        t.join(60_000)
        check(fromThread?.decodeToString() == "t") { "get from a plain thread: $fromThread" }
        val fromIo = withContext(Dispatchers.IO) { client.get("threads") }
        check(fromIo?.decodeToString() == "t") { "get from Dispatchers.IO" }
    }
}

val tests: List<Pair<String, suspend () -> Unit>> = listOf(
    "keys" to { testKeys() },
    "names" to { testNames() },
    "quota" to { testQuota() },
    "any_thread" to { testAnyThread() },
    "sidewire_both_ways" to { testSidewire() },
    "send_timeout_and_cancel" to { testSendTimeoutAndCancel() },
    "close_leaves_the_pool" to { testCloseLeavesThePool() },
    "throwing_listener" to { testThrowingListener() },
    "drayer_mirror" to { testDrayerMirror() },
    "drayer_owned" to { testDrayerOwned() },
    "drayer_tampered" to { testDrayerTampered() },
)

fun main(args: Array<String>) {
    val chosen = if (args.isEmpty()) tests else tests.filter { it.first in args }
    check(chosen.isNotEmpty()) { "no test named ${args.toList()}" }
    val failed = mutableListOf<String>()
    for ((name, test) in chosen) {
        try {
            runBlocking { test() }
            println("ok   $name")
        } catch (e: Throwable) {
            println("FAIL $name: $e")
            e.printStackTrace()
            failed += name
        }
    }
    println("${chosen.size - failed.size} passed, ${failed.size} failed")
    if (failed.isNotEmpty()) kotlin.system.exitProcess(1)
}
