# Sourced by the scripts that run Pulsar's own Java connectors
# (scripts/bench-peers, scripts/peers-switch): resolves Pulsar's LocalRunner
# from Maven Central into CLASSPATH_RUNNER, and finds or builds the
# connectors' NARs into JDBC_NAR and DEBEZIUM_NAR. Expects ROOT, PEERS, WORK,
# VERSION and the functions log and die; see scripts/bench-peers for
# NAR_DIR and PULSAR_SRC.

# Pulsar's LocalRunner, resolved from Maven Central.
if [ ! -s "$WORK/classpath.txt" ] || [ "$PEERS/pom.xml" -nt "$WORK/classpath.txt" ]; then
    log "resolving Pulsar's LocalRunner with Maven"
    mvn -B -q -s scripts/pulsar/settings.xml -f "$PEERS/pom.xml" dependency:build-classpath \
        -Dmdep.outputFile="$WORK/classpath.txt" -Dmdep.includeScope=runtime >"$WORK/logs/maven.log" 2>&1 \
        || die "Maven could not resolve the LocalRunner, see $WORK/logs/maven.log"
fi
CLASSPATH_RUNNER=$(cat "$WORK/classpath.txt")

# The connectors' NARs: given, or built from the source release.
JDBC_NAR=
DEBEZIUM_NAR=
MAVEN_BUILD=(-DskipTests -Dcheckstyle.skip -Dspotbugs.skip -Dlicense.skip -Drat.skip
    -Dmaven.javadoc.skip -Dcyclonedx.skip -Denforcer.skip)
if [ -n "${NAR_DIR:-}" ]; then
    JDBC_NAR=$NAR_DIR/pulsar-io-jdbc-postgres-$VERSION.nar
    DEBEZIUM_NAR=$NAR_DIR/pulsar-io-debezium-postgres-$VERSION.nar
    [ -f "$JDBC_NAR" ] || die "NAR_DIR has no pulsar-io-jdbc-postgres-$VERSION.nar"
    [ -f "$DEBEZIUM_NAR" ] || die "NAR_DIR has no pulsar-io-debezium-postgres-$VERSION.nar"
else
    src=${PULSAR_SRC:-}
    if [ -z "$src" ]; then
        src=$WORK/src/pulsar
        if [ ! -f "$src/pom.xml" ]; then
            log "fetching the Apache Pulsar $VERSION source release from Maven Central"
            mvn -B -q -s scripts/pulsar/settings.xml dependency:get \
                -Dartifact="org.apache.pulsar:pulsar:$VERSION:zip:source-release" -Dtransitive=false \
                >"$WORK/logs/source.log" 2>&1 || die "Maven could not fetch the source release, see $WORK/logs/source.log"
            mkdir -p "$WORK/src"
            unzip -q -o "$HOME/.m2/repository/org/apache/pulsar/pulsar/$VERSION/pulsar-$VERSION-source-release.zip" -d "$WORK/src"
        fi
    fi
    [ -f "$src/pulsar-io/jdbc/postgres/pom.xml" ] || die "$src is not an Apache Pulsar $VERSION source tree"
    JDBC_NAR=$src/pulsar-io/jdbc/postgres/target/pulsar-io-jdbc-postgres-$VERSION.nar
    DEBEZIUM_NAR=$src/pulsar-io/debezium/postgres/target/pulsar-io-debezium-postgres-$VERSION.nar
    if [ ! -f "$JDBC_NAR" ]; then
        log "building pulsar-io-jdbc-postgres-$VERSION.nar with Maven (log: $WORK/logs/nar-jdbc.log)"
        (cd "$src" && mvn -B -s "$ROOT/scripts/pulsar/settings.xml" \
            -pl pulsar-io/jdbc,pulsar-io/jdbc/core,pulsar-io/jdbc/postgres install "${MAVEN_BUILD[@]}") \
            >"$WORK/logs/nar-jdbc.log" 2>&1 || die "the NAR did not build, see $WORK/logs/nar-jdbc.log"
    fi
    if [ ! -f "$DEBEZIUM_NAR" ]; then
        # The Kafka Connect adaptor imports Confluent's Avro converter, which
        # Maven Central does not serve: a minimal stand-in is installed in
        # its place (scripts/peers/confluent-standin, JSON converter only).
        log "building pulsar-io-debezium-postgres-$VERSION.nar with Maven and the Confluent stand-in (log: $WORK/logs/nar-debezium.log)"
        (mvn -B -q -s scripts/pulsar/settings.xml -f "$PEERS/confluent-standin/pom.xml" install \
            && cd "$src" && mvn -B -s "$ROOT/scripts/pulsar/settings.xml" \
            -pl pulsar-io/kafka-connect-adaptor,pulsar-io/debezium,pulsar-io/debezium/core,pulsar-io/debezium/postgres \
            install "${MAVEN_BUILD[@]}") >"$WORK/logs/nar-debezium.log" 2>&1 \
            || die "the NAR did not build, see $WORK/logs/nar-debezium.log"
    fi
fi
