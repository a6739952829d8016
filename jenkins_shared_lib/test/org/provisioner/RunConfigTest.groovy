package org.provisioner

import org.junit.Test

class RunConfigTest {
    static Map config(Map overrides = [:]) {
        [command: 'true', image: null, market: 'any', retries: 2, ondemandAfter: 1, env: [:], credentials: [],
         dockerArgs: [], summaryFile: 'provisioner-summary.json', executable: 'provisioner', description: true,
         managedAtom: 'ec2', labels: [], autotune: true] + overrides
    }

    @Test
    void anyMarketTurnsOnDemandAfterTheConfiguredLosses() {
        assert RunConfig.labelSpec(config(), 1).market == 'any'
        assert RunConfig.labelSpec(config(), 2).market == 'on-demand'
        assert RunConfig.labelSpec(config(ondemandAfter: 2), 2).market == 'any'
        assert RunConfig.labelSpec(config(ondemandAfter: 2), 3).market == 'on-demand'
        assert RunConfig.labelSpec(config(market: 'spot'), 3).market == 'spot'
    }

    @Test
    void labelSpecHoldsOnlyLabelKeys() {
        assert RunConfig.labelSpec(config(vcpu: 4), 1).keySet() ==
            ['managedAtom', 'labels', 'vcpu', 'market', 'autotune'] as Set
    }

    @Test
    void credentialsAcceptIdsAndMaps() {
        assert RunConfig.credentials(['npm-token', '1st.key']) == [
            [type: 'string', id: 'npm-token', variable: 'NPM_TOKEN'],
            [type: 'string', id: '1st.key', variable: '_1ST_KEY']]
        List<Map> both = RunConfig.credentials([[id: 'reg', type: 'usernamePassword', usernameVariable: 'U', passwordVariable: 'P'],
                                                [id: 'tok', variable: 'API_TOKEN']])
        assert RunConfig.secretVariables(both) == ['U', 'P', 'API_TOKEN']
    }

    @Test
    void badValuesAreNamedByKey() {
        List<String> problems = RunConfig.problems(config(command: null, retries: -1, ondemandAfter: 0, env: [('1X'): 'v'],
                                                          credentials: [[id: 'x', type: 'file']], dockerArgs: '--rm',
                                                          description: 'yes', image: 'a b'))
        assert problems.collect { it.tokenize(' ')[0] } ==
            ['command', 'image', 'retries', 'ondemandAfter', 'env', 'credentials', 'dockerArgs', 'description']
        assert problems.find { it.startsWith('credentials') }.contains("type 'file'")
    }

    @Test
    void anEnvEntryMayNotShadowACredential() {
        assert RunConfig.problems(config(env: [NPM_TOKEN: 'x'], credentials: ['npm-token'])) ==
            ['env NPM_TOKEN is also bound by credentials: drop one of them']
    }

    @Test
    void unknownCredentialKeysAreRejected() {
        assert RunConfig.problems(config(credentials: [[id: 'x', varible: 'X']]))[0].contains("unknown key 'varible'")
    }
}
