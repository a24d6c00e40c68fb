// Helper for ./start, run with `java -cp <kafka libs> BrokerProbe.java ...`.
//   free-ports N              print N currently free TCP ports on 127.0.0.1
//   wait HOST:PORT SECS [PID] poll until the broker answers describeCluster
import java.net.InetAddress;
import java.net.ServerSocket;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.AdminClient;
import org.apache.kafka.clients.admin.AdminClientConfig;

public class BrokerProbe {
    public static void main(String[] args) throws Exception {
        if (args[0].equals("free-ports")) {
            // Hold all sockets open until the end so the N ports are distinct.
            List<ServerSocket> sockets = new ArrayList<>();
            StringBuilder out = new StringBuilder();
            for (int i = 0; i < Integer.parseInt(args[1]); i++) {
                ServerSocket s = new ServerSocket(0, 1, InetAddress.getByName("127.0.0.1"));
                sockets.add(s);
                out.append(i == 0 ? "" : " ").append(s.getLocalPort());
            }
            for (ServerSocket s : sockets) s.close();
            System.out.println(out);
        } else if (args[0].equals("wait")) {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Long.parseLong(args[2]));
            Properties p = new Properties();
            p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[1]);
            p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "3000");
            while (System.nanoTime() < deadline) {
                if (args.length > 3 && !ProcessHandle.of(Long.parseLong(args[3])).map(ProcessHandle::isAlive).orElse(false)) {
                    System.err.println("broker process " + args[3] + " exited");
                    System.exit(1);
                }
                try (AdminClient admin = AdminClient.create(p)) {
                    int nodes = admin.describeCluster().nodes().get(5, TimeUnit.SECONDS).size();
                    if (nodes > 0) {
                        System.err.println("broker at " + args[1] + " is up (" + nodes + " node)");
                        return;
                    }
                } catch (Exception e) {
                    // not up yet
                }
                Thread.sleep(1000);
            }
            System.err.println("timed out waiting for " + args[1]);
            System.exit(1);
        } else {
            System.err.println("unknown command " + args[0]);
            System.exit(2);
        }
    }
}
