package gateway.jmsinterop;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/** Differences between what one client sent and what another received, collected so that a
 *  test reports all of them at once. */
final class Diffs {
    private final List<String> found = new ArrayList<>();

    void check(String where, String field, Object seen, Object wanted) {
        if (!Objects.deepEquals(seen, wanted)) {
            found.add(where + ": " + field + " = " + Env.show(seen) + ", wanted " + Env.show(wanted));
        }
    }

    void fail(String where, String what) {
        found.add(where + ": " + what);
    }

    /** Fails the test with every difference (up to 40). */
    void assertNone(String what) {
        if (!found.isEmpty()) {
            throw new AssertionError(what + ": " + found.size() + " difference(s):\n  "
                    + String.join("\n  ", found.subList(0, Math.min(40, found.size()))));
        }
    }
}
