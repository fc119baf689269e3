// The Java KafkaConsumer as a contender of tier-bench's backlog scenario:
// the peer the fast consumer is measured against (issue 14).
//
// Usage: java -cp <kafka-clients and its dependencies>:<this class>
//            ConsumerBench <brokers> <group> <topic> <count> <warmups>
//
// Reads <count> records of <topic> from the beginning, <warmups> times
// unmeasured (each with a group of its own, in this JVM: a warm JIT), then
// once against the clock, which starts before subscribe and stops at the last
// record, as tier-bench's own backlog children do. Numbers are printed in the
// ROOT locale, so the line is JSON whatever the machine's language. Keys are Strings, values
// byte[]: what a Rust consumer of Message<String, Vec<u8>> gets. Prints one
// line for tier-bench:
//   RESULT {"messages":..,"errors":0,"seconds":..,"first_message_s":..,"cpu_s":..,"peak_rss_kib":..}
// CPU is the whole process (every thread, JIT and GC included), read from the
// JVM; peak RSS is the kernel's VmHWM.

import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;

public final class ConsumerBench {
    /** A read that takes longer than this has failed. */
    private static final long TIMEOUT_NANOS = Duration.ofMinutes(5).toNanos();

    public static void main(String[] args) throws Exception {
        if (args.length != 5) {
            System.err.println("usage: ConsumerBench <brokers> <group> <topic> <count> <warmups>");
            System.exit(2);
        }
        String brokers = args[0];
        String group = args[1];
        String topic = args[2];
        long count = Long.parseLong(args[3]);
        int warmups = Integer.parseInt(args[4]);
        for (int warmup = 0; warmup < warmups; warmup++) {
            read(brokers, group + "-warmup-" + warmup, topic, count);
        }
        Result result = read(brokers, group, topic, count);
        System.out.printf(
                Locale.ROOT,
                "RESULT {\"messages\":%d,\"errors\":0,\"seconds\":%.6f,\"first_message_s\":%s,"
                        + "\"cpu_s\":%.6f,\"peak_rss_kib\":%d}%n",
                result.messages, result.seconds,
                result.firstMessageS < 0 ? "null" : String.format(Locale.ROOT, "%.6f", result.firstMessageS),
                result.cpuS, peakRssKib());
        System.out.flush();
    }

    private record Result(long messages, double seconds, double firstMessageS, double cpuS) {}

    private static Result read(String brokers, String group, String topic, long count) {
        Properties properties = new Properties();
        properties.put("bootstrap.servers", brokers);
        properties.put("group.id", group);
        properties.put("auto.offset.reset", "earliest");
        properties.put("enable.auto.commit", "false");
        long cpuStart = processCpuNanos();
        long start = System.nanoTime();
        long firstMessage = -1;
        long messages = 0;
        long bytes = 0;
        try (KafkaConsumer<String, byte[]> consumer = new KafkaConsumer<>(
                properties, new StringDeserializer(), new ByteArrayDeserializer())) {
            consumer.subscribe(List.of(topic));
            while (messages < count) {
                if (System.nanoTime() - start > TIMEOUT_NANOS) {
                    throw new IllegalStateException(
                            "read " + messages + " of " + count + " records of " + topic + " in 5 minutes");
                }
                ConsumerRecords<String, byte[]> records = consumer.poll(Duration.ofMillis(100));
                for (ConsumerRecord<String, byte[]> record : records) {
                    if (firstMessage < 0) {
                        firstMessage = System.nanoTime();
                    }
                    // Touch what a consumer would use, so nothing is optimised away.
                    bytes += record.value() == null ? 0 : record.value().length;
                    messages++;
                }
            }
            long end = System.nanoTime();
            long cpuEnd = processCpuNanos();
            if (bytes < 0) {
                System.err.println(bytes);
            }
            return new Result(
                    messages,
                    (end - start) / 1e9,
                    firstMessage < 0 ? -1 : (firstMessage - start) / 1e9,
                    (cpuEnd - cpuStart) / 1e9);
        }
    }

    private static long processCpuNanos() {
        return ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean())
                .getProcessCpuTime();
    }

    private static long peakRssKib() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith("VmHWM:")) {
                    return Long.parseLong(line.replaceAll("[^0-9]", ""));
                }
            }
        } catch (Exception error) {
            // Not Linux: no figure.
        }
        return 0;
    }
}
