import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.ConnectionFactory;

/**
 * Deletes the queue a PerfTest run used (it is durable and not auto-delete, so it would stay on
 * the broker). Launched as a single source file: java -cp "LIB/*" DeleteQueue.java URL QUEUE.
 * Prints how many messages were still in it.
 */
public class DeleteQueue {
    public static void main(String[] args) throws Exception {
        ConnectionFactory factory = new ConnectionFactory();
        factory.setUri(args[0]);
        factory.setAutomaticRecoveryEnabled(false);
        factory.setConnectionTimeout(10_000);
        try (Connection connection = factory.newConnection(); Channel channel = connection.createChannel()) {
            int left = channel.queueDelete(args[1]).getMessageCount();
            System.out.println("deleted queue " + args[1] + " (" + left + " messages left in it)");
        }
    }
}
